package webtest

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// retryFailure is a failure that uow's Do and the buffered middleware must
// classify alike: work to run in a unit of m, and the number of attempts
// that the policy of sameRetryAsDo (3 attempts) gives it.
type retryFailure struct {
	m        *uow.Manager
	work     func(ctx context.Context) error
	attempts int
	// is, if set, checks the error Do returned, to show the failure is the
	// one the case names.
	is func(t *testing.T, err error)
}

// sameRetryAsDo runs the same failing work through uow's Do and through the
// buffered middleware, with the same unit options (a retry policy of three
// attempts), and checks that they make as many attempts: the middleware
// retries exactly when Do does, by the same policy and classification.
// Every attempt fails the same way. The handler turns the work's error into
// its own 500, or answers 201 and lets the COMMIT fail.
func sameRetryAsDo(t *testing.T, tag string, stack Stack) {
	t.Helper()
	policy := retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond}
	for _, tc := range []struct {
		name    string
		failure func(t *testing.T) retryFailure
	}{
		{"40001 at a statement: retried", func(t *testing.T) retryFailure {
			e := NewEnv(t, tag)
			return retryFailure{m: e.M, attempts: 3, work: func(ctx context.Context) error {
				_, err := repo.From(ctx, e.DB).ExecContext(ctx,
					`DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`)
				return err
			}, is: sqlstate("40001")}
		}},
		{"40001 at COMMIT: retried", func(t *testing.T) retryFailure {
			e := NewEnv(t, tag)
			CommitConflicts(t, e.DB, e.Table, 1000)
			return retryFailure{m: e.M, attempts: 3, work: func(ctx context.Context) error {
				return e.Insert(ctx, "x")
			}, is: sqlstate("40001")}
		}},
		{"a connection failure at BEGIN (*uow.BeginError): retried", func(t *testing.T) retryFailure {
			db := Unreachable(t)
			return retryFailure{m: uow.New(db), attempts: 3, work: func(ctx context.Context) error {
				_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
				return err
			}, is: func(t *testing.T, err error) {
				var be *uow.BeginError
				require.ErrorAs(t, err, &be)
				assert.True(t, be.RetrySafe())
			}}
		}},
		{"a partial commit: never retried", func(t *testing.T) retryFailure {
			p := NewPair(t, tag)
			CommitConflicts(t, p.B, p.TB, 1000)
			return retryFailure{m: p.M, attempts: 1, work: func(ctx context.Context) error {
				return p.Insert(ctx, "")
			}, is: func(t *testing.T, err error) { assert.ErrorIs(t, err, uow.ErrPartialCommit) }}
		}},
		{"a division by zero: not retried", func(t *testing.T) retryFailure {
			e := NewEnv(t, tag)
			return retryFailure{m: e.M, attempts: 1, work: func(ctx context.Context) error {
				_, err := repo.From(ctx, e.DB).ExecContext(ctx, `SELECT 1/0`)
				return err
			}, is: sqlstate("22012")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := tc.failure(t)
			opts := []uow.Option{uow.Retry(policy)}

			var byDo atomic.Int64
			err := f.m.Do(context.Background(), func(ctx context.Context) error {
				byDo.Add(1)
				return f.work(ctx)
			}, opts...)
			require.Error(t, err)
			f.is(t, err)

			var byMiddleware atomic.Int64
			h := stack(Setup{M: f.m, Options: nethttp.Options{
				Buffer:       1 << 16,
				UnitOptions:  func(*http.Request) []uow.Option { return opts },
				ErrorHandler: func(*http.Request, error) {},
			}, Handler: func(w http.ResponseWriter, r *http.Request) error {
				byMiddleware.Add(1)
				if err := f.work(r.Context()); err != nil {
					return err
				}
				w.WriteHeader(http.StatusCreated)
				return nil
			}})
			res := Serve(t, h, "POST", "/", "")
			assert.GreaterOrEqual(t, res.Status, 500, "the final attempt failed")

			assert.EqualValues(t, f.attempts, byDo.Load(), "Do's attempts")
			assert.Equal(t, byDo.Load(), byMiddleware.Load(), "the middleware's attempts, against Do's")
		})
	}
}

// sqlstate returns a check that an error carries code.
func sqlstate(code string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		got, _ := retry.SQLState(err)
		assert.Equal(t, code, got, "SQLSTATE of %v", err)
	}
}

// Unreachable returns a pool whose every connection attempt is refused (a
// PostgreSQL URL on a port where nothing listens): a BEGIN on it fails with
// a connection error before anything ran.
func Unreachable(t *testing.T) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=5")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}
