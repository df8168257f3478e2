package bank_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/uowkit/uowkit/examples/sqlcpgx/db"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
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
	{
		name: ":copyfrom",
		run: func(ctx context.Context, q *db.Queries) (string, error) {
			n, err := q.ImportAccounts(ctx, []db.ImportAccountsParams{{Owner: "carol", Balance: 7}, {Owner: "dave", Balance: 8}})
			return fmt.Sprintf("%d rows", n), err
		},
		result: "2 rows",
		after:  "1 alice 100, 2 bob 50, 3 carol 7, 4 dave 8 |",
	},
	{
		name: ":batchexec",
		run: func(ctx context.Context, q *db.Queries) (string, error) {
			var errs []error
			q.Pay(ctx, []db.PayParams{{FromID: 1, ToID: 2, Amount: 10}, {FromID: 2, ToID: 1, Amount: 3}}).Exec(func(_ int, err error) {
				errs = append(errs, err)
			})
			return fmt.Sprintf("%d results", len(errs)), errors.Join(errs...)
		},
		result: "2 results",
		after:  "1 alice 103, 2 bob 60 | 1->2 10 2->1 3",
	},
}

// way is a way to give generated queries the unit inside m.Do: it runs fn in
// a unit of m with queries bound to it.
type way struct {
	name string
	do   func(ctx context.Context, m *uow.Manager, pool *pgxpool.Pool, fn func(ctx context.Context, q *db.Queries) error) error
}

var ways = []way{
	{
		name: "From",
		do: func(ctx context.Context, m *uow.Manager, pool *pgxpool.Pool, fn func(ctx context.Context, q *db.Queries) error) error {
			return m.Do(ctx, func(ctx context.Context) error {
				return fn(ctx, db.New(uowpgx.From(ctx, pool)))
			})
		},
	},
	{
		name: "TxFrom",
		do: func(ctx context.Context, m *uow.Manager, pool *pgxpool.Pool, fn func(ctx context.Context, q *db.Queries) error) error {
			return m.Do(ctx, func(ctx context.Context) error {
				tx, err := uowpgx.TxFrom(ctx, pool)
				if err != nil {
					return err
				}
				return fn(ctx, db.New(tx))
			})
		},
	},
}

var errBoom = errors.New("boom")

// TestQueryKindsFollowTheUnit checks, against the tables, that a write of
// each sqlc query kind for pgx/v5, bound to a unit either way, is invisible
// outside the unit until it ends, then committed when the callback returns
// nil and rolled back when it returns an error or panics.
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

// TestCopyFromRollsBackEntirely copies 1,000 accounts in a unit that then
// fails, in each way a unit can fail after the COPY: not one row survives.
func TestCopyFromRollsBackEntirely(t *testing.T) {
	t.Parallel()
	rows := make([]db.ImportAccountsParams, 1000)
	for i := range rows {
		rows[i] = db.ImportAccountsParams{Owner: fmt.Sprintf("imported-%04d", i), Balance: int64(i)}
	}
	const inside = "1002 accounts, total 499650 |" // 100 + 50 + 0+1+…+999
	endings := []struct {
		name string
		end  func(ctx context.Context, q *db.Queries) error // what the callback does after the COPY
		want error                                          // what Do returns (nil: it panics)
	}{
		{"error", func(context.Context, *db.Queries) error { return errBoom }, errBoom},
		{"panic", func(context.Context, *db.Queries) error { panic(errBoom) }, nil},
		{"failed statement, error dropped", func(ctx context.Context, q *db.Queries) error {
			_, err := q.CreateAccount(ctx, db.CreateAccountParams{Owner: "imported-0999", Balance: 1}) // duplicate owner
			if err == nil {
				t.Error("duplicate owner accepted")
			}
			return nil // a careless caller: the unit is rollback-only anyway
		}, uow.ErrRollbackOnly},
	}
	for _, e := range endings {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			pool, m := seeded(t)
			var err error
			p := catch(func() {
				err = m.Do(context.Background(), func(ctx context.Context) error {
					q := db.New(uowpgx.From(ctx, pool))
					n, err := q.ImportAccounts(ctx, rows)
					if err != nil || n != 1000 {
						t.Errorf("ImportAccounts = %d, %v; want 1000 rows", n, err)
						return err
					}
					if got := render(t, ctx, q); got != inside {
						t.Errorf("inside the unit: %q, want %q", got, inside)
					}
					return e.end(ctx, q)
				})
			})
			switch {
			case e.want == nil && p != errBoom:
				t.Errorf("panic %v (Do = %v), want %v", p, err, errBoom)
			case e.want != nil && !errors.Is(err, e.want):
				t.Errorf("Do = %v (panic %v), want %v", err, p, e.want)
			}
			if got := snapshot(t, pool); got != seed {
				t.Errorf("after the unit: %q, want %q", got, seed)
			}
		})
	}
}

// TestPoolInsideUnitIsRefused is the trap: the pool given to db.New where
// the unit was meant. Inside a unit, every query kind on the guarded pool
// fails with uow.ErrAutocommit and writes nothing, even when the callback
// swallows the error and the unit commits.
func TestPoolInsideUnitIsRefused(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			pool, m := seeded(t)
			err := m.Do(context.Background(), func(ctx context.Context) error {
				_, err := k.run(ctx, db.New(pool)) // the mistake
				if !errors.Is(err, uow.ErrAutocommit) {
					t.Errorf("%s on the pool inside a unit: %v, want an error matching uow.ErrAutocommit", k.name, err)
				}
				return nil // a careless caller drops the error
			})
			if err != nil {
				t.Errorf("Do = %v, want nil: the refused statement is not the unit's", err)
			}
			if got := snapshot(t, pool); got != seed {
				t.Errorf("after the unit: %q, want %q: the statement on the pool went through", got, seed)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections still acquired after the refusal", n)
			}
		})
	}
}

// TestPoolOutsideUnitAutocommits checks that the guard stays out of the way
// without a unit: every query kind on the guarded pool runs and commits at
// once, and so does From, which returns the pool there.
func TestPoolOutsideUnitAutocommits(t *testing.T) {
	t.Parallel()
	binds := []struct {
		name string
		q    func(ctx context.Context, pool *pgxpool.Pool) *db.Queries
	}{
		{"pool", func(_ context.Context, pool *pgxpool.Pool) *db.Queries { return db.New(pool) }},
		{"From", func(ctx context.Context, pool *pgxpool.Pool) *db.Queries { return db.New(uowpgx.From(ctx, pool)) }},
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

// TestTxFromOutsideUnit checks the strict form: without a unit, TxFrom
// refuses rather than hand out the pool.
func TestTxFromOutsideUnit(t *testing.T) {
	t.Parallel()
	pool, _ := seeded(t)
	if q, err := uowpgx.TxFrom(context.Background(), pool); !errors.Is(err, uow.ErrNoUnit) || q != nil {
		t.Errorf("TxFrom without a unit = %v, %v; want nil, %v", q, err, uow.ErrNoUnit)
	}
}

// TestNothingBeforeTheFirstQuery checks that binding generated queries to a
// unit sends nothing: the transaction begins at the first query, and a unit
// that runs none takes no connection from the pool.
func TestNothingBeforeTheFirstQuery(t *testing.T) {
	t.Parallel()
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			pool, m := fresh(t)
			ctx := context.Background()
			base := pool.Stat().AcquireCount()
			err := w.do(ctx, m, pool, func(context.Context, *db.Queries) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			if n := pool.Stat().AcquireCount() - base; n != 0 {
				t.Errorf("a unit that ran no query acquired %d connections, want 0", n)
			}
			err = w.do(ctx, m, pool, func(ctx context.Context, q *db.Queries) error {
				if n := pool.Stat().AcquireCount() - base; n != 0 {
					t.Errorf("%d connections acquired before the first query, want 0", n)
				}
				if _, err := q.ListAccounts(ctx); err != nil {
					return err
				}
				if _, err := q.ListTransfers(ctx); err != nil {
					return err
				}
				if n := pool.Stat().AcquireCount() - base; n != 1 {
					t.Errorf("%d connections acquired after two queries, want 1 (one transaction)", n)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
