package bank_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/examples/sqlc/bank"
	"github.com/uowkit/uowkit/examples/sqlc/db"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// mustSchema returns ../schema.sql, the file sqlc generates from, for tests
// and Example functions alike (which have no testing.TB): a failure panics.
func mustSchema() string {
	b, err := os.ReadFile("../schema.sql")
	if err != nil {
		panic(err)
	}
	return string(b)
}

// fresh returns a guarded pool (bank.OpenDB) on a database of the test's
// own holding the schema, and a manager on it. The pool is closed at the
// end of the test, after checking that no connection is left in use.
func fresh(t *testing.T) (*sqlx.DB, *uow.Manager) {
	t.Helper()
	u := pgtest.FreshURL(t, "sqlc")
	pool, err := bank.OpenDB(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := pool.Stats().InUse; n != 0 {
			t.Errorf("%d connections still in use at the end of the test", n)
		}
		pool.Close()
	})
	if _, err := pool.Exec(mustSchema()); err != nil {
		t.Fatal(err)
	}
	return pool, uow.New(pool)
}

// seeded is fresh with two accounts, 1 alice 100 and 2 bob 50, created in
// autocommit on the guarded pool (no unit in the context).
func seeded(t *testing.T) (*sqlx.DB, *uow.Manager) {
	t.Helper()
	pool, m := fresh(t)
	q := db.New(pool)
	for _, a := range []db.CreateAccountParams{{Owner: "alice", Balance: 100}, {Owner: "bob", Balance: 50}} {
		if _, err := q.CreateAccount(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	if got := snapshot(t, pool); got != seed {
		t.Fatalf("seed = %q, want %q", got, seed)
	}
	return pool, m
}

// seed is the snapshot of a seeded database.
const seed = "1 alice 100, 2 bob 50 |"

// snapshot renders what is committed: both tables, read in autocommit with
// a context that carries no unit.
func snapshot(tb testing.TB, pool *sqlx.DB) string {
	tb.Helper()
	return render(tb, context.Background(), db.New(pool))
}

// render renders both tables as q sees them: accounts as "id owner balance"
// by id, then a bar, then transfers as "from->to amount" by id.
func render(tb testing.TB, ctx context.Context, q *db.Queries) string {
	tb.Helper()
	as, err := q.ListAccounts(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := q.ListTransfers(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s %d", a.ID, a.Owner, a.Balance)
	}
	b.WriteString(" |")
	for _, t := range ts {
		fmt.Fprintf(&b, " %d->%d %d", t.FromID, t.ToID, t.Amount)
	}
	return b.String()
}

var exampleSeq atomic.Int64

// exampleURL returns the URL of a new database holding the schema, for an
// Example; pgtest.Main drops it after the run. Each call gets a database of
// its own, so that examples stay re-runnable under -count.
func exampleURL() string {
	u := pgtest.ExampleURL(fmt.Sprintf("sqlc_example_%d", exampleSeq.Add(1)))
	setup := sqlx.MustOpen("postgres", u)
	defer setup.Close()
	setup.MustExec(mustSchema())
	return u
}
