package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// EnvPgBouncerURL names the environment variable that points the tests at
// a PgBouncer in transaction pooling mode in front of the server of
// EnvURL; only its host, port, user and parameters are used, the database
// is the test's. Without it, defaultPgBouncerURL is tried (what
// scripts/pgbouncer.sh starts).
const EnvPgBouncerURL = "UOWKIT_PGBOUNCER_URL"

const defaultPgBouncerURL = "postgres://postgres@127.0.0.1:6432/postgres?sslmode=disable"

var (
	bouncerOnce sync.Once
	bouncerBase string // the URL of PgBouncer, database aside
	bouncerWhy  string // why the tests that need PgBouncer cannot run
)

// PgBouncerURL returns the URL of the database of tag (see [URL]: it is
// created on the server itself) reached through PgBouncer in transaction
// pooling mode (pool_mode = transaction), so that every transaction of a
// client may run on a different server connection, and one server
// connection serves many clients in turn. It skips the test when no such
// PgBouncer answers, and fails it under CI, where scripts/pgbouncer.sh
// (called by .ci/run) has started one. PgBouncer must let the URL's user
// into its admin console (admin_users): the check of pool_mode, and
// [PgBouncerPool], read it.
//
// Drivers behind a transaction pooler must not rely on anything a session
// keeps between transactions: see docs/pgbouncer.md (pgx needs a query
// execution mode without server-side prepared statements before PgBouncer
// 1.21).
func PgBouncerURL(tb testing.TB, tag string) string {
	tb.Helper()
	requireServer(tb)
	requirePgBouncer(tb)
	u, err := withDatabase(bouncerBase, dbName(URL(tb, tag)))
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// requirePgBouncer skips tb, or fails it under CI, when no PgBouncer in
// transaction pooling mode answers.
func requirePgBouncer(tb testing.TB) {
	tb.Helper()
	bouncerOnce.Do(probePgBouncer)
	if bouncerWhy == "" {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("pgtest: " + bouncerWhy)
	}
	tb.Skip("pgtest: " + bouncerWhy)
}

// probePgBouncer finds PgBouncer and checks, in its admin console, that it
// pools by transaction.
func probePgBouncer() {
	bouncerBase = os.Getenv(EnvPgBouncerURL)
	if bouncerBase == "" {
		bouncerBase = defaultPgBouncerURL
	}
	how := fmt.Sprintf("start one with `bash scripts/pgbouncer.sh` or set %s to a postgres:// URL of a PgBouncer (pool_mode = transaction, this user in admin_users) in front of %s", EnvPgBouncerURL, redact(adminURL))
	mode, err := pgBouncerSetting(bouncerBase, "pool_mode")
	switch {
	case err != nil:
		bouncerWhy = fmt.Sprintf("no PgBouncer admin console at %s (%v); %s", redact(bouncerBase), err, how)
	case mode != "transaction":
		bouncerWhy = fmt.Sprintf("PgBouncer at %s has pool_mode = %s, not transaction; %s", redact(bouncerBase), mode, how)
	}
}

// adminDB opens PgBouncer's admin console (the virtual database
// "pgbouncer"). It speaks the simple query protocol only: lib/pq uses it for
// statements without arguments.
func adminDB(base string) (*sql.DB, error) {
	u, err := withDatabase(base, "pgbouncer")
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("postgres", u)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// pgBouncerSetting returns the value of one of PgBouncer's settings (SHOW
// CONFIG), or "" when this version has no such setting.
func pgBouncerSetting(base, key string) (string, error) {
	db, err := adminDB(base)
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := showRows(ctx, db, "SHOW CONFIG")
	if err != nil {
		return "", err
	}
	for _, r := range rows {
		if r["key"] == key {
			return r["value"], nil
		}
	}
	return "", nil
}

// PgBouncerSetting returns the value of PgBouncer's setting key, as its
// admin console shows it (SHOW CONFIG), or "" when this version of
// PgBouncer has no such setting (max_prepared_statements before 1.21).
func PgBouncerSetting(tb testing.TB, key string) string {
	tb.Helper()
	requirePgBouncer(tb)
	v, err := pgBouncerSetting(bouncerBase, key)
	if err != nil {
		tb.Fatalf("pgtest: PgBouncer's SHOW CONFIG: %v", err)
	}
	return v
}

// showRows runs one of the admin console's SHOW commands and returns its
// rows as column name → text.
func showRows(ctx context.Context, db *sql.DB, show string) ([]map[string]string, error) {
	rows, err := db.QueryContext(ctx, show)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		r := make(map[string]string, len(cols))
		for i, c := range cols {
			r[c] = vals[i].String
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// PgBouncerPoolState is one pool of PgBouncer (a database and a user) as
// its admin console shows it (SHOW POOLS).
type PgBouncerPoolState struct {
	// Mode is the pool's pool_mode.
	Mode string
	// ClientsActive are client connections paired with a server connection
	// or idle between transactions; ClientsWaiting wait for a server
	// connection.
	ClientsActive, ClientsWaiting int
	// ServersActive are server connections running a client's transaction;
	// ServersIdle, ServersUsed, ServersTested and ServersLogin are the
	// others, idle, about to be checked, being checked, logging in.
	ServersActive, ServersIdle, ServersUsed, ServersTested, ServersLogin int
}

// Servers returns the number of server connections the pool has.
func (p PgBouncerPoolState) Servers() int {
	return p.ServersActive + p.ServersIdle + p.ServersUsed + p.ServersTested + p.ServersLogin
}

// PgBouncerPool returns the state of PgBouncer's pool for the database and
// user of u, a URL from PgBouncerURL; the zero state when PgBouncer has no
// pool for them (yet, or any more).
func PgBouncerPool(tb testing.TB, u string) PgBouncerPoolState {
	tb.Helper()
	requirePgBouncer(tb)
	p, err := pgBouncerPool(u)
	if err != nil {
		tb.Fatalf("pgtest: PgBouncer's SHOW POOLS: %v", err)
	}
	return p
}

func pgBouncerPool(u string) (PgBouncerPoolState, error) {
	var p PgBouncerPoolState
	pu, err := url.Parse(u)
	if err != nil {
		return p, err
	}
	db, err := adminDB(bouncerBase)
	if err != nil {
		return p, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := showRows(ctx, db, "SHOW POOLS")
	if err != nil {
		return p, err
	}
	name, user := strings.TrimPrefix(pu.Path, "/"), pu.User.Username()
	for _, r := range rows {
		if r["database"] != name || r["user"] != user {
			continue
		}
		n := func(col string) int {
			v, _ := strconv.Atoi(r[col])
			return v
		}
		return PgBouncerPoolState{
			Mode:           r["pool_mode"],
			ClientsActive:  n("cl_active"),
			ClientsWaiting: n("cl_waiting"),
			ServersActive:  n("sv_active"),
			ServersIdle:    n("sv_idle"),
			ServersUsed:    n("sv_used"),
			ServersTested:  n("sv_tested"),
			ServersLogin:   n("sv_login"),
		}, nil
	}
	return p, nil
}

// WaitPgBouncerWaiting blocks until at least n clients of PgBouncer's pool
// for u (a URL from PgBouncerURL) wait for a server connection, and fails
// the test after 30 s: proof that the clients queue in PgBouncer, behind a
// pool of server connections all of which are taken.
func WaitPgBouncerWaiting(tb testing.TB, u string, n int) {
	tb.Helper()
	requirePgBouncer(tb)
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := pgBouncerPool(u)
		if err != nil {
			tb.Fatalf("pgtest: PgBouncer's SHOW POOLS: %v", err)
		}
		if p.ClientsWaiting >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: %d client(s) waiting in PgBouncer after 30 s, want %d (pool: %+v)", p.ClientsWaiting, n, p)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dbName returns the database a URL or key=value DSN names.
func dbName(u string) string {
	if p, err := url.Parse(u); err == nil && (p.Scheme == "postgres" || p.Scheme == "postgresql") {
		return strings.TrimPrefix(p.Path, "/")
	}
	for _, f := range strings.Fields(u) {
		if v, ok := strings.CutPrefix(f, "dbname="); ok {
			return v
		}
	}
	return ""
}

// WaitPgBouncerIdle blocks until PgBouncer's pool for u (a URL from
// PgBouncerURL) has no server connection running a transaction and no
// client waiting for one, and fails the test after 30 s: every unit gave
// its server connection back. A client that went away in the middle of a
// transaction (an interrupted statement) makes PgBouncer close that server
// connection, which the admin console shows a moment later, hence the wait.
func WaitPgBouncerIdle(tb testing.TB, u string) PgBouncerPoolState {
	tb.Helper()
	requirePgBouncer(tb)
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := pgBouncerPool(u)
		if err != nil {
			tb.Fatalf("pgtest: PgBouncer's SHOW POOLS: %v", err)
		}
		if p.ServersActive == 0 && p.ClientsWaiting == 0 {
			return p
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: PgBouncer's pool still busy after 30 s: %+v", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitFinished blocks until no statement containing marker is executing on
// another connection of db's database (pg_stat_activity), and fails the
// test after 30 s: proof that a statement a client gave up on (cancelled,
// timed out) stopped on the server too, rather than keep a server
// connection, one of PgBouncer's few, busy.
func WaitFinished(tb testing.TB, db *sqlx.DB, marker string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got int
		err := db.Get(&got, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'active'
			AND pid <> pg_backend_pid() AND strpos(query, $1) > 0`, marker)
		if err != nil {
			tb.Fatalf("pgtest: pg_stat_activity: %v", err)
		}
		if got == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: %d statement(s) containing %q still running after 30 s", got, marker)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
