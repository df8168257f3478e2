package bank_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/uowkit/uowkit/examples/sqlcpgx/bank"
	"github.com/uowkit/uowkit/examples/sqlcpgx/db"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
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

// fresh returns a guarded pool (bank.OpenPool) on a database of the test's
// own holding the schema, and a manager whose one source is that pool. The
// pool is closed at the end of the test, after checking that no connection
// is left acquired.
func fresh(t *testing.T) (*pgxpool.Pool, *uow.Manager) {
	t.Helper()
	u := pgtest.FreshURL(t, "sqlcpgx")
	pool, err := bank.OpenPool(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("%d connections still acquired at the end of the test", n)
		}
		pool.Close()
	})
	if _, err := pool.Exec(context.Background(), mustSchema()); err != nil {
		t.Fatal(err)
	}
	return pool, uow.New(nil, uowpgx.WithPool("main", pool))
}

// seeded is fresh with two accounts, 1 alice 100 and 2 bob 50, created in
// autocommit on the guarded pool (no unit in the context).
func seeded(t *testing.T) (*pgxpool.Pool, *uow.Manager) {
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
func snapshot(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	return render(tb, context.Background(), db.New(pool))
}

// render renders both tables as q sees them: accounts as "id owner balance"
// by id, then a bar, then transfers as "from->to amount" by id. More than
// five accounts are summed up as "N accounts, total T".
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
	if len(as) > 5 {
		var total int64
		for _, a := range as {
			total += a.Balance
		}
		fmt.Fprintf(&b, "%d accounts, total %d", len(as), total)
	} else {
		for i, a := range as {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%d %s %d", a.ID, a.Owner, a.Balance)
		}
	}
	b.WriteString(" |")
	for _, t := range ts {
		fmt.Fprintf(&b, " %d->%d %d", t.FromID, t.ToID, t.Amount)
	}
	return b.String()
}

var exampleSeq atomic.Int64

// exampleURL returns the URL of a new database holding the schema and the
// two accounts of seed, for an Example; pgtest.Main drops it after the run.
// Each call gets a database of its own, so that examples stay re-runnable
// under -count.
func exampleURL() string {
	u := pgtest.ExampleURL(fmt.Sprintf("sqlcpgx_example_%d", exampleSeq.Add(1)))
	ctx := context.Background()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		panic(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, mustSchema()); err != nil {
		panic(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO accounts (owner, balance) VALUES ('alice', 100), ('bob', 50)"); err != nil {
		panic(err)
	}
	return u
}
