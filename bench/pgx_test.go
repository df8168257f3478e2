package bench_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	trmpgx "github.com/avito-tech/go-transaction-manager/drivers/pgxv5/v2"
	"github.com/avito-tech/go-transaction-manager/trm/v2/manager"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// The nop-driver cases need no server; the pgx cases below ask pgtest for a
// database of this process, and skip (fail under CI) without one.
func TestMain(m *testing.M) { os.Exit(pgtest.MainOptional(m)) }

// syncCommit is the synchronous_commit of the pgx cases' sessions. Off by
// default: the three implementations send the same statements, and a COMMIT
// that waits for the WAL flush would add the disk's latency, and its noise,
// to all of them alike, hiding what the libraries cost.
var syncCommit = flag.String("bench.pgx.synchronous_commit", "off", "synchronous_commit of the pgx cases' sessions")

var pgxTableSeq atomic.Int64

// pgxPool returns a pgx pool on this process's benchmark database and a
// table of its own, created empty. The pool is closed at the end of tb.
// guard applies uowpgx.Guard, as uowkit's documented setup does.
func pgxPool(tb testing.TB, guard bool) (*pgxpool.Pool, string) {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(tb, "bench_pgx"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = *syncCommit
	if guard {
		uowpgx.Guard(cfg)
	}
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	table := fmt.Sprintf("bench_pgx_%d", pgxTableSeq.Add(1))
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (v bigint)"); err != nil {
		tb.Fatal(err)
	}
	return pool, table
}

// insertInto is the one statement of the pgx cases.
func insertInto(table string) string { return "INSERT INTO " + table + " (v) VALUES ($1)" }

// BenchmarkPgxHand is the baseline on PostgreSQL through pgx's own pool:
// pool.Begin, tx.Exec, tx.Commit written by hand.
func BenchmarkPgxHand(b *testing.B) { run(b, pgxHandCases(b)) }

// BenchmarkPgxUowkit is uowkit on the same: Manager.Do over a source added
// with uowpgx.WithPool (on a pool guarded by uowpgx.Guard), each statement
// through uowpgx.From.
func BenchmarkPgxUowkit(b *testing.B) { run(b, pgxUowkitCases(b)) }

// BenchmarkPgxTrm is avito-tech/go-transaction-manager v2 with its pgxv5
// driver: Manager.Do, each statement through the default CtxGetter.
func BenchmarkPgxTrm(b *testing.B) { run(b, pgxTrmCases(b)) }

// TestPgxCases runs every pgx case of every implementation a few times and
// checks that each committed its rows, so that go test without -bench
// proves the benchmarks still work.
func TestPgxCases(t *testing.T) {
	t.Parallel()
	for name, cases := range map[string]func(testing.TB) ([]benchCase, *pgxpool.Pool, string){
		"PgxHand": pgxHand, "PgxUowkit": pgxUowkit, "PgxTrm": pgxTrm,
	} {
		cs, pool, table := cases(t)
		for _, c := range cs {
			for i := range 3 {
				if err := c.run(i); err != nil {
					t.Errorf("%s/%s: %v", name, c.name, err)
				}
			}
		}
		const want = 3*1 + 3*5 // 1_INSERT and 5_INSERTs, three units each
		var got int
		if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: %d rows committed, want %d", name, got, want)
		}
	}
}

func pgxHandCases(tb testing.TB) []benchCase   { cs, _, _ := pgxHand(tb); return cs }
func pgxUowkitCases(tb testing.TB) []benchCase { cs, _, _ := pgxUowkit(tb); return cs }
func pgxTrmCases(tb testing.TB) []benchCase    { cs, _, _ := pgxTrm(tb); return cs }

func pgxHand(tb testing.TB) ([]benchCase, *pgxpool.Pool, string) {
	pool, table := pgxPool(tb, false)
	insert := insertInto(table)
	ctx := benchContext(tb)
	inserts := func(n int) func(i int) error {
		return func(i int) error {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			for range n {
				if _, err := tx.Exec(ctx, insert, i); err != nil {
					_ = tx.Rollback(ctx)
					return err
				}
			}
			return tx.Commit(ctx)
		}
	}
	return pgxCases(inserts), pool, table
}

func pgxUowkit(tb testing.TB) ([]benchCase, *pgxpool.Pool, string) {
	pool, table := pgxPool(tb, true)
	insert := insertInto(table)
	ctx := benchContext(tb)
	m := uow.New(nil, uowpgx.WithPool("main", pool))
	inserts := func(n int) func(i int) error {
		return func(i int) error {
			return m.Do(ctx, func(ctx context.Context) error {
				for range n {
					if _, err := uowpgx.From(ctx, pool).Exec(ctx, insert, i); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	return pgxCases(inserts), pool, table
}

func pgxTrm(tb testing.TB) ([]benchCase, *pgxpool.Pool, string) {
	pool, table := pgxPool(tb, false)
	insert := insertInto(table)
	ctx := benchContext(tb)
	m := manager.Must(trmpgx.NewDefaultFactory(pool))
	getter := trmpgx.DefaultCtxGetter
	inserts := func(n int) func(i int) error {
		return func(i int) error {
			return m.Do(ctx, func(ctx context.Context) error {
				for range n {
					if _, err := getter.DefaultTrOrDB(ctx, pool).Exec(ctx, insert, i); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	return pgxCases(inserts), pool, table
}

// pgxCases are the pgx cases of one implementation, given how it runs a
// unit of n INSERTs.
func pgxCases(inserts func(n int) func(i int) error) []benchCase {
	return []benchCase{
		{"1 INSERT", inserts(1)},
		{"5 INSERTs", inserts(5)},
	}
}
