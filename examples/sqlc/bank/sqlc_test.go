package bank_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/examples/sqlc/db"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// kind is one write through a generated query of one sqlc kind, on a
// seeded database.
type kind struct {
	name   string
	run    func(ctx context.Context, q *db.Queries) (string, error) // the write, and what it returned
	result string                                                   // what run returns
	after  string                                                   // the snapshot once committed
}

var kinds = []kind{
	{
		name: ":one",
		run: func(ctx context.Context, q *db.Queries) (string, error) {
			a, err := q.CreateAccount(ctx, db.CreateAccountParams{Owner: "carol", Balance: 7})
			return fmt.Sprintf("%d %s %d", a.ID, a.Owner, a.Balance), err
		},
		result: "3 carol 7",
		after:  "1 alice 100, 2 bob 50, 3 carol 7 |",
	},
	{
		name: ":many",
		run: func(ctx context.Context, q *db.Queries) (string, error) {
			as, err := q.CreditAll(ctx, 5)
			return fmt.Sprintf("%d rows", len(as)), err
		},
		result: "2 rows",
		after:  "1 alice 105, 2 bob 55 |",
	},
	{
		name: ":exec",
		run: func(ctx context.Context, q *db.Queries) (string, error) {
			return "", q.CreateTransfer(ctx, db.CreateTransferParams{FromID: 1, ToID: 2, Amount: 10})
		},
		result: "",
		after:  seed + " 1->2 10",
	},
	{
		name: ":execrows",
		run: func(ctx context.Context, q *db.Queries) (string, error) {
			n, err := q.ChargeFee(ctx, 30)
			return fmt.Sprintf("%d rows", n), err
		},
		result: "2 rows",
		after:  "1 alice 70, 2 bob 20 |",
	},
}

// way is one of the two ways to give generated queries a unit: it runs fn in
// a unit of m with queries bound to it.
type way struct {
	name string
	do   func(ctx context.Context, m *uow.Manager, pool *sqlx.DB, fn func(ctx context.Context, q *db.Queries) error) error
}

var ways = []way{
	{
		name: "repo.From in Do",
		do: func(ctx context.Context, m *uow.Manager, pool *sqlx.DB, fn func(ctx context.Context, q *db.Queries) error) error {
			return m.Do(ctx, func(ctx context.Context) error {
				return fn(ctx, db.New(repo.From(ctx, pool)))
			})
		},
	},
	{
		name: "Runner on u.On",
		do: func(ctx context.Context, m *uow.Manager, pool *sqlx.DB, fn func(ctx context.Context, q *db.Queries) error) error {
			r := uow.NewRunner(m, func(u *uow.Unit) *db.Queries {
				return db.New(u.On(pool))
			})
			return r.Do(ctx, fn)
		},
	},
}

var errBoom = errors.New("boom")

// TestQueryKindsFollowTheUnit checks, against the tables, that a write of
// each sqlc query kind, bound to a unit either way, is invisible outside the
// unit until it ends, then committed when the callback returns nil and
// rolled back when it returns an error or panics.
func TestQueryKindsFollowTheUnit(t *testing.T) {
	t.Parallel()
	endings := []struct {
		name   string
		end    func() error // what the callback does once it has written
		commit bool
	}{
		{"nil commits", func() error { return nil }, true},
		{"error rolls back", func() error { return errBoom }, false},
		{"panic rolls back", func() error { panic(errBoom) }, false},
	}
	for _, w := range ways {
		for _, k := range kinds {
			for _, e := range endings {
				t.Run(w.name+"/"+k.name+"/"+e.name, func(t *testing.T) {
					t.Parallel()
					pool, m := seeded(t)
					var err error
					p := catch(func() {
						err = w.do(context.Background(), m, pool, func(ctx context.Context, q *db.Queries) error {
							got, err := k.run(ctx, q)
							if err != nil {
								t.Errorf("%s: %v", k.name, err)
								return err
							}
							if got != k.result {
								t.Errorf("%s returned %q, want %q", k.name, got, k.result)
							}
							if got := render(t, ctx, q); got != k.after {
								t.Errorf("inside the unit: %q, want %q", got, k.after)
							}
							if got := snapshot(t, pool); got != seed {
								t.Errorf("outside the unit, before it ends: %q, want %q (not yet committed)", got, seed)
							}
							return e.end()
						})
					})
					want := seed
					if e.commit {
						want = k.after
					}
					if got := snapshot(t, pool); got != want {
						t.Errorf("after the unit: %q, want %q", got, want)
					}
					switch e.name {
					case "nil commits":
						if err != nil || p != nil {
							t.Errorf("Do = %v, panic %v; want nil", err, p)
						}
					case "error rolls back":
						if !errors.Is(err, errBoom) || p != nil {
							t.Errorf("Do = %v, panic %v; want %v", err, p, errBoom)
						}
					case "panic rolls back":
						if p != errBoom {
							t.Errorf("panic %v (Do = %v), want the callback's panic %v", p, err, errBoom)
						}
					}
				})
			}
		}
	}
}

// catch runs f and returns what it panicked with, if anything.
func catch(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// TestExecRowsCounts checks the counts :execrows queries return through a
// unit's handle: what the server reports, 0 included.
func TestExecRowsCounts(t *testing.T) {
	t.Parallel()
	pool, m := seeded(t)
	r := uow.NewRunner(m, func(u *uow.Unit) *db.Queries { return db.New(u.On(pool)) })
	steps := []struct {
		name string
		run  func(ctx context.Context, q *db.Queries) (int64, error)
		want int64
	}{
		{"debit covered", func(ctx context.Context, q *db.Queries) (int64, error) {
			return q.AddToBalance(ctx, db.AddToBalanceParams{ID: 1, Amount: -60}) // alice 100 → 40
		}, 1},
		{"debit not covered", func(ctx context.Context, q *db.Queries) (int64, error) {
			return q.AddToBalance(ctx, db.AddToBalanceParams{ID: 2, Amount: -51})
		}, 0},
		{"no such account", func(ctx context.Context, q *db.Queries) (int64, error) {
			return q.AddToBalance(ctx, db.AddToBalanceParams{ID: 99, Amount: 1})
		}, 0},
		{"fee both pay", func(ctx context.Context, q *db.Queries) (int64, error) {
			return q.ChargeFee(ctx, 40) // alice 40 → 0, bob 50 → 10
		}, 2},
		{"fee one pays", func(ctx context.Context, q *db.Queries) (int64, error) {
			return q.ChargeFee(ctx, 10) // bob 10 → 0
		}, 1},
		{"fee nobody pays", func(ctx context.Context, q *db.Queries) (int64, error) {
			return q.ChargeFee(ctx, 1)
		}, 0},
	}
	err := r.Do(context.Background(), func(ctx context.Context, q *db.Queries) error {
		for _, s := range steps {
			n, err := s.run(ctx, q)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if n != s.want {
				t.Errorf("%s: %d rows, want %d", s.name, n, s.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := snapshot(t, pool), "1 alice 0, 2 bob 0 |"; got != want {
		t.Errorf("after the unit: %q, want %q", got, want)
	}
}

// TestPoolInsideUnitIsRefused is the trap: the pool given to db.New where
// the unit was meant. Inside a unit, every query kind on the guarded pool
// fails with uow.ErrAutocommit and writes nothing, even when the callback
// swallows the error and the unit commits.
func TestPoolInsideUnitIsRefused(t *testing.T) {
	t.Parallel()
	for _, w := range ways {
		for _, k := range kinds {
			t.Run(w.name+"/"+k.name, func(t *testing.T) {
				t.Parallel()
				pool, m := seeded(t)
				// Whatever Do returns, the refused statement must have written nothing.
				_ = w.do(context.Background(), m, pool, func(ctx context.Context, _ *db.Queries) error {
					_, err := k.run(ctx, db.New(pool)) // the mistake
					if !errors.Is(err, uow.ErrAutocommit) {
						t.Errorf("%s on the pool inside a unit: %v, want an error matching uow.ErrAutocommit", k.name, err)
					}
					return nil // a careless caller drops the error
				})
				if got := snapshot(t, pool); got != seed {
					t.Errorf("after the unit: %q, want %q: the statement on the pool went through", got, seed)
				}
			})
		}
	}
}

// TestPoolOutsideUnitAutocommits checks that the guard stays out of the way
// without a unit: every query kind on the guarded pool runs and commits at
// once, and so does repo.From, which returns the pool there.
func TestPoolOutsideUnitAutocommits(t *testing.T) {
	t.Parallel()
	binds := []struct {
		name string
		q    func(ctx context.Context, pool *sqlx.DB) *db.Queries
	}{
		{"pool", func(_ context.Context, pool *sqlx.DB) *db.Queries { return db.New(pool) }},
		{"repo.From", func(ctx context.Context, pool *sqlx.DB) *db.Queries { return db.New(repo.From(ctx, pool)) }},
	}
	for _, b := range binds {
		for _, k := range kinds {
			t.Run(b.name+"/"+k.name, func(t *testing.T) {
				t.Parallel()
				pool, _ := seeded(t)
				ctx := context.Background()
				got, err := k.run(ctx, b.q(ctx, pool))
				if err != nil {
					t.Fatal(err)
				}
				if got != k.result {
					t.Errorf("%s returned %q, want %q", k.name, got, k.result)
				}
				if got := snapshot(t, pool); got != k.after {
					t.Errorf("after the statement: %q, want %q", got, k.after)
				}
			})
		}
	}
}

var lazySeq atomic.Int64

// TestNothingBeforeTheFirstQuery checks that binding generated queries to a
// unit, either way, sends nothing: the transaction begins at the first
// query, and a unit that runs none costs no round trip.
func TestNothingBeforeTheFirstQuery(t *testing.T) {
	t.Parallel()
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			pool, counts := pgtest.OpenCounting(t, fmt.Sprintf("sqlc_lazy_%d", lazySeq.Add(1)))
			if _, err := pool.Exec(mustSchema()); err != nil {
				t.Fatal(err)
			}
			m := uow.New(pool)
			ctx := context.Background()
			base := counts.Total()
			err := w.do(ctx, m, pool, func(context.Context, *db.Queries) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			if n := counts.Total() - base; n != 0 {
				t.Errorf("a unit that ran no query sent %d round trips, want 0", n)
			}
			err = w.do(ctx, m, pool, func(ctx context.Context, q *db.Queries) error {
				if n := counts.Total() - base; n != 0 {
					t.Errorf("%d round trips before the first query, want 0", n)
				}
				if _, err := q.ListAccounts(ctx); err != nil {
					return err
				}
				if n := counts.Begins.Load(); n != 1 {
					t.Errorf("%d BEGINs after the first query, want 1", n)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n := counts.Commits.Load(); n != 1 {
				t.Errorf("%d COMMITs, want 1", n)
			}
		})
	}
}
