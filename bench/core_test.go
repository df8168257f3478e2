package bench_test

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	trmsqlx "github.com/avito-tech/go-transaction-manager/drivers/sqlx/v2"
	"github.com/avito-tech/go-transaction-manager/trm/v2"
	"github.com/avito-tech/go-transaction-manager/trm/v2/manager"
	"github.com/avito-tech/go-transaction-manager/trm/v2/settings"
	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/nopdriver"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// cancelable runs the database cases under a cancelable context, as a
// request's is, instead of context.Background: trm then starts a goroutine
// per transaction to watch it, and uowkit may watch it too.
var cancelable = flag.Bool("bench.cancelable", false, "run the database cases under a cancelable context")

// warmup is how long run exercises each case before any is measured.
var warmup = flag.Duration("bench.warmup", 20*time.Millisecond, "how long to run each case unmeasured before measuring")

const insert = `INSERT INTO bench (v) VALUES ($1)`

// newDB returns a sqlx handle on a do-nothing connector, named "postgres" so
// that every library picks PostgreSQL's placeholders and savepoint syntax.
func newDB(tb testing.TB) *sqlx.DB {
	db := sqlx.NewDb(sql.OpenDB(nopdriver.Connector{}), "postgres")
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func benchContext(tb testing.TB) context.Context {
	if !*cancelable {
		return context.Background()
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	return ctx
}

// healthz is the handler of the no-DB request: it writes 200 and never
// touches the database.
var healthz = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok"))
})

// request returns a unit of work that serves one request to h.
func request(h http.Handler) func(int) error {
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	return func(int) error {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("status %d", rec.Code)
		}
		return nil
	}
}

// benchCase is one case of one implementation: run does one unit of work,
// given the iteration number.
type benchCase struct {
	name string
	run  func(i int) error
}

// run warms up all the cases, so that the first one measured in a fresh
// process does not pay for the process's start (heap growth, page faults,
// caches), then benchmarks each. Besides ns/op (wall time), each reports
// cpu-ns/op, the process's CPU time per iteration (see cpuTime).
func run(b *testing.B, cases []benchCase) {
	for _, c := range cases {
		for i, start := 0, time.Now(); time.Since(start) < *warmup; i++ {
			if err := c.run(i); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			start, ok := cpuTime()
			n := 0
			for b.Loop() {
				if err := c.run(n); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if end, ok2 := cpuTime(); ok && ok2 && n > 0 {
				b.ReportMetric(float64(end-start)/float64(n), "cpu-ns/op")
			}
		})
	}
}

// BenchmarkHand is the baseline: sqlx transactions written by hand, and the
// bare handler for the no-DB request.
func BenchmarkHand(b *testing.B) { run(b, handCases(b)) }

// BenchmarkUowkit is uowkit: Manager.Do with repo.From, nested units through
// Propagate(Nested), and the streaming net/http middleware.
func BenchmarkUowkit(b *testing.B) { run(b, uowkitCases(b)) }

// BenchmarkTrm is avito-tech/go-transaction-manager v2 with its sqlx driver:
// Manager.Do with the default CtxGetter, nested units through
// PropagationNested (a savepoint in its sqlx driver). It has no HTTP
// middleware.
func BenchmarkTrm(b *testing.B) { run(b, trmCases(b)) }

// TestCases runs every case of every implementation a few times, so that
// go test without -bench proves the benchmarks still work.
func TestCases(t *testing.T) {
	t.Parallel()
	for name, cases := range map[string]func(testing.TB) []benchCase{
		"Hand": handCases, "Uowkit": uowkitCases, "Trm": trmCases,
	} {
		for _, c := range cases(t) {
			for i := range 3 {
				if err := c.run(i); err != nil {
					t.Errorf("%s/%s: %v", name, c.name, err)
				}
			}
		}
	}
}

func handCases(tb testing.TB) []benchCase {
	db := newDB(tb)
	ctx := benchContext(tb)
	inserts := func(n int) func(i int) error {
		return func(i int) error {
			tx, err := db.BeginTxx(ctx, nil)
			if err != nil {
				return err
			}
			for range n {
				if _, err := tx.ExecContext(ctx, insert, i); err != nil {
					_ = tx.Rollback()
					return err
				}
			}
			return tx.Commit()
		}
	}
	nested := func(i int) error {
		tx, err := db.BeginTxx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, insert, i); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT sp1"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, insert, i); err != nil {
			_, _ = tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT sp1")
			return err
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT sp1"); err != nil {
			return err
		}
		return tx.Commit()
	}
	return []benchCase{
		{"1 INSERT", inserts(1)},
		{"5 INSERTs", inserts(5)},
		{"nested savepoint", nested},
		{"no-DB request", request(healthz)},
	}
}

func uowkitCases(tb testing.TB) []benchCase {
	db := newDB(tb)
	ctx := benchContext(tb)
	m := uow.New(db)
	inserts := func(n int) func(i int) error {
		return func(i int) error {
			return m.Do(ctx, func(ctx context.Context) error {
				for range n {
					if _, err := repo.From(ctx, db).ExecContext(ctx, insert, i); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	savepoint := uow.Propagate(uow.Nested)
	nested := func(i int) error {
		return m.Do(ctx, func(ctx context.Context) error {
			if _, err := repo.From(ctx, db).ExecContext(ctx, insert, i); err != nil {
				return err
			}
			return m.Do(ctx, func(ctx context.Context) error {
				_, err := repo.From(ctx, db).ExecContext(ctx, insert, i)
				return err
			}, savepoint)
		})
	}
	empty := func(context.Context) error { return nil }
	return []benchCase{
		{"1 INSERT", inserts(1)},
		{"5 INSERTs", inserts(5)},
		{"nested savepoint", nested},
		{"empty unit", func(int) error { return m.Do(ctx, empty) }},
		{"no-DB request", request(nethttp.Transaction(m)(healthz))},
	}
}

func trmCases(tb testing.TB) []benchCase {
	db := newDB(tb)
	ctx := benchContext(tb)
	m := manager.Must(trmsqlx.NewDefaultFactory(db))
	getter := trmsqlx.DefaultCtxGetter
	inserts := func(n int) func(i int) error {
		return func(i int) error {
			return m.Do(ctx, func(ctx context.Context) error {
				for range n {
					if _, err := getter.DefaultTrOrDB(ctx, db).ExecContext(ctx, insert, i); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	savepoint := settings.Must(settings.WithPropagation(trm.PropagationNested))
	nested := func(i int) error {
		return m.Do(ctx, func(ctx context.Context) error {
			if _, err := getter.DefaultTrOrDB(ctx, db).ExecContext(ctx, insert, i); err != nil {
				return err
			}
			return m.DoWithSettings(ctx, savepoint, func(ctx context.Context) error {
				_, err := getter.DefaultTrOrDB(ctx, db).ExecContext(ctx, insert, i)
				return err
			})
		})
	}
	empty := func(context.Context) error { return nil }
	return []benchCase{
		{"1 INSERT", inserts(1)},
		{"5 INSERTs", inserts(5)},
		{"nested savepoint", nested},
		{"empty unit", func(int) error { return m.Do(ctx, empty) }},
	}
}
