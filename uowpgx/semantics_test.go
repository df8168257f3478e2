package uowpgx_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

var errBoom = errors.New("boom")

// What a unit promises, over both kinds of source: one table, run for each.
func TestSemantics(t *testing.T) {
	scenarios := []struct {
		name  string
		run   func(t *testing.T, f *fixture)
		conns int // the pool's size; 0: 4
	}{
		{"nil commits, an error rolls back, a panic rolls back", func(t *testing.T, f *fixture) {
			ctx := context.Background()
			require.NoError(t, f.m.Do(ctx, func(ctx context.Context) error { return f.src.exec(ctx, `INSERT INTO t VALUES (1)`) }))
			require.ErrorIs(t, f.m.Do(ctx, func(ctx context.Context) error {
				require.NoError(t, f.src.exec(ctx, `INSERT INTO t VALUES (2)`))
				return errBoom
			}), errBoom)
			require.Panics(t, func() {
				_ = f.m.Do(ctx, func(ctx context.Context) error {
					require.NoError(t, f.src.exec(ctx, `INSERT INTO t VALUES (3)`))
					panic("boom")
				})
			})
			assert.Equal(t, 1, f.count(t))
		}, 0},
		{"an unused unit takes no connection", func(t *testing.T, f *fixture) {
			ctx, u := f.m.Begin(context.Background())
			require.NoError(t, uow.AfterCommit(ctx, func(context.Context) error { return nil }))
			assert.Zero(t, f.src.busy())
			require.NoError(t, u.Commit())
		}, 0},
		{"isolation and read-only reach the server", func(t *testing.T, f *fixture) {
			err := f.m.Do(context.Background(), func(ctx context.Context) error {
				n, err := f.src.one(ctx, `SELECT CASE WHEN current_setting('transaction_isolation') = 'serializable' AND current_setting('transaction_read_only') = 'on' THEN 1 ELSE 0 END`)
				require.NoError(t, err)
				assert.Equal(t, 1, n)
				return f.src.exec(ctx, `INSERT INTO t VALUES (1)`)
			}, uow.Isolation(sql.LevelSerializable), uow.ReadOnly(), uow.NoRetry())
			code, _ := retry.SQLState(err)
			assert.Equal(t, "25006", code, "a write in a read-only unit fails in the database: %v", err)
			assert.Zero(t, f.count(t))
		}, 0},
		{"propagation: join, nested, requires-new, mandatory", func(t *testing.T, f *fixture) {
			ctx := context.Background()
			err := f.m.Do(ctx, func(ctx context.Context) error {
				require.NoError(t, f.src.exec(ctx, `INSERT INTO t VALUES (1)`))
				// A nested unit rolls back alone.
				require.ErrorIs(t, f.m.Do(ctx, func(ctx context.Context) error {
					require.NoError(t, f.src.exec(ctx, `INSERT INTO t VALUES (2)`))
					return errBoom
				}, uow.Propagate(uow.Nested)), errBoom)
				// An independent unit commits on its own.
				require.NoError(t, f.m.Do(ctx, func(ctx context.Context) error {
					return f.src.exec(ctx, `INSERT INTO t VALUES (3)`)
				}, uow.Propagate(uow.RequiresNew)))
				// A joined unit sees the outer unit's work.
				return f.m.Do(ctx, func(ctx context.Context) error {
					n, err := f.src.one(ctx, `SELECT count(*) FROM t WHERE v = 1`)
					require.NoError(t, err)
					assert.Equal(t, 1, n)
					return nil
				}, uow.Propagate(uow.Mandatory))
			})
			require.NoError(t, err)
			var vs []int
			require.NoError(t, f.db.Select(&vs, `SELECT v FROM t ORDER BY v`))
			assert.Equal(t, []int{1, 3}, vs)
			require.ErrorIs(t, f.m.Do(ctx, func(context.Context) error { return nil }, uow.Propagate(uow.Mandatory)), uow.ErrNoUnit)
		}, 0},
		{"a failed statement makes the unit rollback-only", func(t *testing.T, f *fixture) {
			ctx, u := f.m.Begin(context.Background())
			defer u.Rollback()
			require.NoError(t, f.src.exec(ctx, `INSERT INTO t VALUES (1)`))
			require.Error(t, f.src.exec(ctx, `INSERT INTO t VALUES (1)`), "duplicate key")
			require.ErrorIs(t, u.Commit(), uow.ErrRollbackOnly)
			assert.Zero(t, f.count(t))
		}, 0},
		{"hooks follow the outcome", func(t *testing.T, f *fixture) {
			var ran []string
			hooks := func(ctx context.Context) {
				_ = uow.AfterCommit(ctx, func(context.Context) error { ran = append(ran, "commit"); return nil })
				_ = uow.AfterRollback(ctx, func(context.Context) error { ran = append(ran, "rollback"); return nil })
			}
			_ = f.m.Do(context.Background(), func(ctx context.Context) error {
				hooks(ctx)
				return f.src.exec(ctx, `INSERT INTO t VALUES (1)`)
			})
			_ = f.m.Do(context.Background(), func(ctx context.Context) error {
				hooks(ctx)
				return errBoom
			})
			assert.Equal(t, []string{"commit", "rollback"}, ran)
		}, 0},
		{"a serialization failure is retried, at a statement and at COMMIT", func(t *testing.T, f *fixture) {
			for _, at := range []string{"statement", "commit"} {
				f.db.MustExec(`TRUNCATE t`)
				other, err := f.db.BeginTxx(context.Background(), &sql.TxOptions{Isolation: sql.LevelSerializable})
				require.NoError(t, err)
				var n int
				require.NoError(t, other.Get(&n, `SELECT count(*) FROM t`))
				calls := 0
				err = f.m.Do(context.Background(), func(ctx context.Context) error {
					calls++
					if _, err := f.src.one(ctx, `SELECT count(*) FROM t`); err != nil {
						return err
					}
					if calls == 1 && at == "statement" {
						_, err := other.Exec(`INSERT INTO t VALUES (100)`)
						require.NoError(t, err)
						require.NoError(t, other.Commit())
					}
					if err := f.src.exec(ctx, `INSERT INTO t VALUES ($1)`, calls); err != nil {
						return err
					}
					if calls == 1 && at == "commit" {
						_, err := other.Exec(`INSERT INTO t VALUES (100)`)
						require.NoError(t, err)
						require.NoError(t, other.Commit())
					}
					return nil
				}, uow.Isolation(sql.LevelSerializable), uow.Retry(retry.Policy{MaxAttempts: 10, BaseDelay: time.Millisecond}))
				require.NoError(t, err, at)
				assert.Equal(t, 2, calls, "retried once at the %s", at)
				assert.Equal(t, 2, f.count(t), at)
			}
		}, 0},
		{"a deadlock is retried", func(t *testing.T, f *fixture) {
			f.db.MustExec(`INSERT INTO t VALUES (1), (2)`)
			var locked sync.WaitGroup
			locked.Add(2)
			var retries atomic.Int64
			p := retry.Policy{MaxAttempts: 20, BaseDelay: time.Millisecond,
				OnRetry: func(context.Context, int, time.Duration, error) { retries.Add(1) }}
			transfer := func(first, second int) error {
				attempt := 0
				return f.m.Do(context.Background(), func(ctx context.Context) error {
					attempt++
					if err := f.src.exec(ctx, `SET LOCAL deadlock_timeout = '50ms'`); err != nil {
						return err
					}
					if err := f.src.exec(ctx, `UPDATE t SET v = v + 10 WHERE v = $1`, first); err != nil {
						return err
					}
					if attempt == 1 {
						locked.Done()
						locked.Wait() // both hold their first row: opposite orders deadlock
					}
					return f.src.exec(ctx, `UPDATE t SET v = v + 100 WHERE v = $1`, second)
				}, uow.Retry(p))
			}
			errs := make(chan error, 2)
			go func() { errs <- transfer(1, 2) }()
			go func() { errs <- transfer(2, 1) }()
			require.NoError(t, <-errs)
			require.NoError(t, <-errs)
			assert.GreaterOrEqual(t, retries.Load(), int64(1), "the 40P01 was retried")
		}, 0},
		{"an exhausted pool honours the unit's timeout", func(t *testing.T, f *fixture) {
			hold, u := f.m.Begin(context.Background())
			require.NoError(t, f.src.exec(hold, `SELECT 1`)) // takes the only connection
			done := make(chan error, 1)
			go func() {
				done <- f.m.Do(context.Background(), func(ctx context.Context) error {
					return f.src.exec(ctx, `INSERT INTO t VALUES (1)`)
				}, uow.Timeout(200*time.Millisecond))
			}()
			select {
			case err := <-done:
				require.ErrorIs(t, err, context.DeadlineExceeded)
			case <-time.After(30 * time.Second):
				_ = u.Rollback()
				t.Fatal("the unit waited for the holder instead of its deadline")
			}
			require.NoError(t, u.Rollback())
			assert.Zero(t, f.count(t))
		}, 1},
		{"cancellation interrupts a statement and releases the connection", func(t *testing.T, f *fixture) {
			parent, cancel := context.WithCancel(context.Background())
			ctx, u := f.m.Begin(parent)
			require.NoError(t, f.src.exec(ctx, `INSERT INTO t VALUES (1)`))
			done := make(chan error, 1)
			go func() { done <- f.src.exec(ctx, `SELECT pg_sleep(60) /* uowpgx-cancel */`) }()
			waitRunning(t, f, "uowpgx-cancel")
			cancel()
			require.Error(t, <-done)
			require.ErrorIs(t, u.Commit(), context.Canceled)
			released(t, f.src)
			assert.Zero(t, f.count(t))
		}, 0},
	}
	for _, k := range kinds {
		for _, s := range scenarios {
			t.Run(k.name+"/"+s.name, func(t *testing.T) {
				conns := s.conns
				if conns == 0 {
					conns = 4
				}
				f := newFixture(t, k.open, conns)
				s.run(t, f)
				released(t, f.src)
			})
		}
	}
}

// released waits until src's pool has every connection back. pgxpool
// destroys a connection whose statement was interrupted on a goroutine of
// its own, so the count may lag the rollback by a moment.
func released(t *testing.T, src source) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); src.busy() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still in use", src.busy())
		}
	}
}

// waitRunning blocks until a statement containing marker runs on the server.
func waitRunning(t *testing.T, f *fixture, marker string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var n int
		require.NoError(t, f.db.Get(&n, `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`, "%"+marker+"%"))
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no statement %q ever ran", marker)
		}
	}
}
