package outbox_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var tableSeq atomic.Int64

// env is one test's outbox: a table of its own in the package's database.
type env struct {
	db    *sqlx.DB
	m     *uow.Manager
	table string
	ob    *outbox.Outbox
}

// newEnv creates an outbox (and an inbox, and a domain table
// <table>_orders) under a table name of the test's own, dropped at its end.
func newEnv(t testing.TB) *env {
	t.Helper()
	db := pgtest.Open(t, "outbox")
	return newEnvOn(t, db)
}

func newEnvOn(t testing.TB, db *sqlx.DB) *env {
	t.Helper()
	table := fmt.Sprintf("ob%d_%d", os.Getpid(), tableSeq.Add(1))
	ctx := context.Background()
	require.NoError(t, outbox.CreateSchema(ctx, db, outbox.Postgres, table))
	require.NoError(t, outbox.CreateInboxSchema(ctx, db, outbox.Postgres, table+"_inbox"))
	db.MustExec(`CREATE TABLE ` + table + `_orders (id bigserial PRIMARY KEY, item text NOT NULL)`)
	t.Cleanup(func() {
		db.MustExec(`DROP TABLE IF EXISTS ` + table + `, ` + table + `_keys, ` + table + `_lease, ` +
			table + `_inbox, ` + table + `_orders`)
		db.MustExec(`DROP FUNCTION IF EXISTS ` + table + `_notify()`)
	})
	ob, err := outbox.New(db, outbox.Postgres, table)
	require.NoError(t, err)
	return &env{db: db, m: uow.New(db), table: table, ob: ob}
}

// relay returns a relay of e's outbox publishing to p.
func (e *env) relay(t testing.TB, p outbox.Publisher, c outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	c.Table = e.table
	r, err := outbox.NewRelay(e.db.DB, outbox.Postgres, p, c)
	require.NoError(t, err)
	return r
}

// record records msgs in a unit of their own, with an order row.
func (e *env) record(t testing.TB, msgs ...outbox.Message) {
	t.Helper()
	require.NoError(t, e.m.Do(context.Background(), func(ctx context.Context) error {
		if _, err := uow.FromContext(ctx).On(e.db).ExecContext(ctx, `INSERT INTO `+e.table+`_orders (item) VALUES ('x')`); err != nil {
			return err
		}
		return e.ob.Record(ctx, msgs...)
	}))
}

func (e *env) count(t testing.TB, where string) int {
	t.Helper()
	var n int
	require.NoError(t, e.db.Get(&n, `SELECT count(*) FROM `+e.table+` WHERE `+where))
	return n
}

// published is a message as a relay published it.
type published struct {
	by string
	m  outbox.Message
}

// recorder is an in-memory broker: it records what each relay published.
type recorder struct {
	mu  sync.Mutex
	got []published
}

func (r *recorder) publisher(by string) outbox.Publisher {
	return outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, published{by, m})
		return nil
	})
}

func (r *recorder) all() []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]published(nil), r.got...)
}

func (r *recorder) ids() []string {
	var ids []string
	for _, p := range r.all() {
		ids = append(ids, p.m.ID)
	}
	return ids
}

// distinct returns how many different ids were published.
func (r *recorder) distinct() int {
	seen := map[string]bool{}
	for _, p := range r.all() {
		seen[p.m.ID] = true
	}
	return len(seen)
}

// eventually polls cond until it holds, failing the test after 30 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 30 s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// run runs r in the background until the returned stop is called (or the
// test ends), and waits for it to return.
func run(t testing.TB, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// keySeqs returns each message id's key and key_seq.
func (e *env) keySeqs(t testing.TB) map[string]struct {
	Key string
	Seq int64
} {
	t.Helper()
	rows, err := e.db.Query(`SELECT message_id, key, key_seq FROM ` + e.table)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]struct {
		Key string
		Seq int64
	}{}
	for rows.Next() {
		var id, key string
		var seq int64
		require.NoError(t, rows.Scan(&id, &key, &seq))
		out[id] = struct {
			Key string
			Seq int64
		}{key, seq}
	}
	require.NoError(t, rows.Err())
	return out
}
