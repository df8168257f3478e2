package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the driver the tests use
	"go.uber.org/goleak"
)

// EnvURL names the environment variable that points the tests at a server.
const EnvURL = "UOWKIT_POSTGRES_URL"

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	mu       sync.Mutex
	adminURL string
	dbURLs   = map[string]string{} // name → URL of the databases created by this process
	byTag    = map[string]string{} // tag → URL
	skipWhy  string
)

// Main runs a test package against fresh databases and returns the exit code for
// os.Exit. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int { return run(m, false) }

// run finds the server and runs the tests. Without a server it fails under
// CI; otherwise it skips the whole package, or, when optional, runs it and
// lets the tests that ask for a database skip themselves.
func run(m *testing.M, optional bool) int {
	adminURL = os.Getenv(EnvURL)
	if adminURL == "" {
		adminURL = defaultURL
	}
	if err := ping(adminURL); err != nil {
		skipWhy = fmt.Sprintf("no PostgreSQL reachable at %s (%v); start one or set %s to a postgres:// URL of a server where this user may CREATE DATABASE",
			redact(adminURL), err, EnvURL)
		switch {
		case optional:
			fmt.Fprintln(os.Stderr, "pgtest: the tests that need PostgreSQL will skip (fail with CI set): "+skipWhy)
		case os.Getenv("CI") != "":
			fmt.Fprintln(os.Stderr, "pgtest: CI is set, so a missing database is a failure: "+skipWhy)
			return 1
		default:
			// Examples cannot skip themselves, so the whole package is skipped.
			fmt.Fprintln(os.Stderr, "pgtest: SKIPPING this package's tests: "+skipWhy)
			return 0
		}
	}
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	for name := range dbURLs {
		if err := dropDatabase(name); err != nil && code == 0 {
			fmt.Fprintf(os.Stderr, "pgtest: drop database %s: %v\n", name, err)
			code = 1
		}
	}
	if code == 0 {
		// Every pool is closed by now (Open's cleanup): nothing may be left.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: leaked goroutines: %v\n", err)
			code = 1
		}
	}
	return code
}

// URL returns the URL of a freshly created database called after tag; the same
// tag in one process returns the same database. It skips the test (fails under
// CI) when no server is reachable.
func URL(tb testing.TB, tag string) string {
	tb.Helper()
	requireServer(tb)
	u, err := database(tag)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// ExampleDB returns a pool on the database of tag for Example functions, which
// have no testing.TB; it panics if the database cannot be had. Main has
// already skipped the package when there is no server.
func ExampleDB(tag string) *sqlx.DB {
	u, err := database(tag)
	if err != nil {
		panic(err)
	}
	return sqlx.MustOpen("postgres", u)
}

// ExampleURL returns the URL of the database of tag for Example functions
// that open their own pool (pgx); it panics if the database cannot be had.
func ExampleURL(tag string) string {
	u, err := database(tag)
	if err != nil {
		panic(err)
	}
	return u
}

func database(tag string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if u, ok := byTag[tag]; ok {
		return u, nil
	}
	_, u, err := createLocked(tag)
	if err != nil {
		return "", err
	}
	byTag[tag] = u
	return u, nil
}

// maxTag keeps database names within PostgreSQL's 63 bytes, random suffix
// included: the server would cut a longer name, and the suffix with it.
const maxTag = 40

// createLocked creates a database named after tag with a random suffix,
// records it for Main to drop, and returns its name and URL. mu must be held.
func createLocked(tag string) (name, u string, err error) {
	tag = sanitize(tag)
	if len(tag) > maxTag {
		tag = tag[:maxTag]
	}
	name = "uowkit_" + tag + "_" + randomSuffix()
	if err := exec(adminURL, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	if u, err = withDatabase(adminURL, name); err != nil {
		return "", "", err
	}
	dbURLs[name] = u
	return name, u, nil
}

// Open returns a pool on the database of tag (see [URL]), closed at the end of
// the test, after checking that the test left no connection in use.
func Open(tb testing.TB, tag string) *sqlx.DB {
	tb.Helper()
	return openPool(tb, URL(tb, tag))
}

// openPool opens a pool on u, closed at the end of the test after checking
// that the test left no connection in use.
func openPool(tb testing.TB, u string) *sqlx.DB {
	tb.Helper()
	db, err := sqlx.Open("postgres", u)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if n := db.Stats().InUse; n != 0 {
			tb.Errorf("pgtest: %d connections still in use at the end of the test", n)
		}
		db.Close()
	})
	return db
}

// AdminURL returns the URL of the server's maintenance database, for tests that
// need to look at server-wide views or terminate backends.
func AdminURL(tb testing.TB) string {
	tb.Helper()
	requireServer(tb)
	return adminURL
}

// requireServer skips tb, or fails it under CI, when no server is reachable.
func requireServer(tb testing.TB) {
	tb.Helper()
	if adminURL == "" {
		tb.Fatal("pgtest: Main was not called from TestMain")
	}
	if skipWhy == "" {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("pgtest: " + skipWhy)
	}
	tb.Skip("pgtest: " + skipWhy)
}

func ping(u string) error {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

func exec(u, stmt string) error {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(stmt)
	return err
}

func dropDatabase(name string) error {
	return exec(adminURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// withDatabase returns u pointing at database name; u may be a URL or a
// key=value DSN.
func withDatabase(u, name string) (string, error) {
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		p, err := url.Parse(u)
		if err != nil {
			return "", fmt.Errorf("pgtest: %s: %w", EnvURL, err)
		}
		p.Path = "/" + name
		q := p.Query()
		if q.Get("sslmode") == "" {
			q.Set("sslmode", "disable")
		}
		p.RawQuery = q.Encode()
		return p.String(), nil
	}
	var kept []string
	for _, f := range strings.Fields(u) {
		if !strings.HasPrefix(f, "dbname=") {
			kept = append(kept, f)
		}
	}
	return strings.Join(append(kept, "dbname="+name), " "), nil
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), "xxx")
	}
	return p.String()
}

var tableSeq atomic.Int64

// Table creates a table with the given column definitions under a name of
// its own (prefix plus a unique suffix), dropped at the end of the test, and
// returns the name.
func Table(tb testing.TB, db *sqlx.DB, prefix, columns string) string {
	tb.Helper()
	name := fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), tableSeq.Add(1))
	if _, err := db.Exec(`CREATE TABLE ` + name + ` (` + columns + `)`); err != nil {
		tb.Fatalf("pgtest: create table %s: %v", name, err)
	}
	tb.Cleanup(func() { _, _ = db.Exec(`DROP TABLE IF EXISTS ` + name) })
	return name
}

// DeferredFK creates a child table whose foreign key to a parent table is
// checked only at COMMIT, and returns the child's name: inserting a row
// (with any parent value) makes COMMIT itself fail, for real.
func DeferredFK(tb testing.TB, db *sqlx.DB) string {
	tb.Helper()
	parent := Table(tb, db, "parent", `id int PRIMARY KEY`)
	child := Table(tb, db, "child", `p int REFERENCES `+parent+` DEFERRABLE INITIALLY DEFERRED`)
	// The child goes first at cleanup (LIFO), then the parent.
	return child
}

// WaitRunning blocks until a statement containing marker is executing on
// another connection of db's database (pg_stat_activity shows it active), and
// fails the test after 30 s. A cancel request that reaches PostgreSQL before
// the backend has read the statement is ignored, so tests that cancel a
// running statement must first see it running.
func WaitRunning(tb testing.TB, db *sqlx.DB, marker string) {
	tb.Helper()
	waitActive(tb, db, marker, 1, "", "running")
}

// WaitBlocked blocks until at least n statements containing marker are
// waiting for a lock on other connections of db's database
// (pg_stat_activity shows wait_event_type Lock), and fails the test after
// 30 s. Use it to order lock waits for certain, for example to decide which
// side of a deadlock the server will detect: WaitRunning only says that a
// statement has started.
func WaitBlocked(tb testing.TB, db *sqlx.DB, marker string, n int) {
	tb.Helper()
	waitActive(tb, db, marker, n, "Lock", "waiting for a lock")
}

// waitActive polls pg_stat_activity until at least n active statements of
// other connections contain marker (waiting on waitEvent, when set), for up
// to 30 s.
func waitActive(tb testing.TB, db *sqlx.DB, marker string, n int, waitEvent, what string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got int
		err := db.Get(&got, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'active'
			AND ($2 = '' OR wait_event_type = $2)
			AND pid <> pg_backend_pid() AND strpos(query, $1) > 0`, marker, waitEvent)
		if err != nil {
			tb.Fatalf("pgtest: pg_stat_activity: %v", err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: %d statement(s) containing %q %s after 30 s, want %d", got, marker, what, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
