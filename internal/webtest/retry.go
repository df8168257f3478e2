package webtest

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
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

// realSerializationFailure runs a [writeSkew] through buffered mode with
// retry: the handler reads its body (replayed on every attempt) and answers
// 201, and leaves a failed attempt's error to the framework (a 500), which
// the middleware re-runs all the same, since the unit failed retryably.
func realSerializationFailure(t *testing.T, tag string, stack Stack) {
	t.Helper()
	ws := newWriteSkew(t, tag)
	ws.check(t, stack(Setup{M: ws.M, Options: nethttp.Options{
		Buffer:      1 << 16,
		UnitOptions: func(*http.Request) []uow.Option { return ws.unitOptions() },
	}, Handler: func(w http.ResponseWriter, r *http.Request) error {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		text, err := ws.attempt(r.Context(), string(body))
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusCreated)
		_, err = fmt.Fprint(w, text)
		return err
	}}))
}

// serializationFailureAtCommit makes the first COMMITs of a handler's unit
// fail with 40001. The handler reads its body, inserts it, sets X-Attempt
// (and X-First-Attempt on the first run) and answers 201 with the attempt
// and the body it read. Streaming and buffered mode without retry answer
// 503 with Retry-After in whole seconds, rounded up; buffered mode with
// retry re-runs the handler with the body replayed, and the client gets one
// clean 201 with only the last run's headers, or 503 once the attempts or
// MaxElapsed are exhausted. The error hook is told of the 40001 only when
// the client gets 503.
func serializationFailureAtCommit(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, tc := range []struct {
		name      string
		conflicts int
		opts      nethttp.Options
		status    int
		body      string
		retryHdr  string
		attempts  int
		rows      int
	}{
		{"streaming: 503 with Retry-After in whole seconds, rounded up", 1, nethttp.Options{RetryAfter: 2500 * time.Millisecond},
			503, "Service Unavailable\n", "3", 1, 0},
		{"buffered without Retry: 503", 1, nethttp.Options{Buffer: 1 << 10},
			503, "Service Unavailable\n", "1", 1, 0},
		{"buffered with Retry: re-run, one clean 201", 2, nethttp.Options{Buffer: 1 << 10, UnitOptions: RetryWith(retry.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond})},
			201, "attempt 3 read payload", "", 3, 1},
		{"buffered, attempts exhausted: 503", 5, nethttp.Options{Buffer: 1 << 10, UnitOptions: RetryWith(retry.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond})},
			503, "Service Unavailable\n", "1", 2, 0},
		{"buffered, MaxElapsed passed: 503", 1, nethttp.Options{Buffer: 1 << 10, UnitOptions: RetryWith(retry.Policy{MaxAttempts: 5, MaxElapsed: time.Nanosecond})},
			503, "Service Unavailable\n", "1", 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := NewEnv(t, tag)
			CommitConflicts(t, e.DB, e.Table, tc.conflicts)
			var reported Errors
			s := tc.opts
			s.ErrorHandler = reported.Handle
			var attempts atomic.Int64
			h := stack(Setup{M: e.M, Options: s, Handler: func(w http.ResponseWriter, r *http.Request) error {
				n := attempts.Add(1)
				body, err := io.ReadAll(r.Body) // replayed on every attempt
				if err != nil {
					return err
				}
				if err := e.Insert(r.Context(), string(body)); err != nil {
					return err
				}
				w.Header().Set("X-Attempt", fmt.Sprint(n))
				if n == 1 {
					w.Header().Set("X-First-Attempt", "yes")
				}
				w.WriteHeader(http.StatusCreated)
				_, err = fmt.Fprintf(w, "attempt %d read %s", n, body)
				return err
			}})
			res := Serve(t, h, "POST", "/", "payload")
			assert.Equal(t, tc.status, res.Status)
			assert.Equal(t, tc.body, res.Body)
			assert.Equal(t, tc.retryHdr, res.Header.Get("Retry-After"))
			assert.EqualValues(t, tc.attempts, attempts.Load(), "handler runs")
			assert.Equal(t, tc.rows, e.Rows(t))
			assert.Empty(t, res.Header.Get("X-First-Attempt"), "no header of a failed attempt")
			if tc.status == 503 {
				assert.Empty(t, res.Header.Get("X-Attempt"), "no header of a failed attempt")
				code, _ := retry.SQLState(reported.One(t))
				assert.Equal(t, "40001", code)
				return
			}
			assert.Equal(t, fmt.Sprint(tc.attempts), res.Header.Get("X-Attempt"))
			assert.Empty(t, reported.List())
		})
	}
}

// writeSkew is two serializable requests that each count a table's rows and
// then insert one, their first attempts waiting for each other in between:
// one of them must fail with 40001 (at the INSERT or at COMMIT), and buffered
// retry must re-run it until both succeed in some serial order.
type writeSkew struct {
	*Env
	// M is a manager on the Env's database whose Observer counts EventRetry.
	M *uow.Manager
	// Policy is the retry policy of the scenario's units (unitOptions),
	// which buffered mode re-runs the handler by; its OnRetry counts.
	Policy retry.Policy

	retries, observed atomic.Int64
	firstReads        sync.WaitGroup
	attempts          sync.Map // body → *atomic.Int64
}

// newWriteSkew prepares the scenario on the database of tag.
func newWriteSkew(t *testing.T, tag string) *writeSkew {
	env := NewEnv(t, tag)
	w := &writeSkew{Env: env}
	w.M = uow.New(env.DB, uow.WithObserver(uow.ObserverFunc(func(_ context.Context, ev uow.Event) {
		if ev.Kind == uow.EventRetry {
			w.observed.Add(1)
		}
	})))
	// Room to outlast the competing transaction on a loaded machine.
	w.Policy = retry.Policy{MaxAttempts: 50, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond,
		OnRetry: func(context.Context, int, time.Duration, error) { w.retries.Add(1) }}
	w.firstReads.Add(2)
	return w
}

// unitOptions are the options of the scenario's units: serializable, with
// Policy.
func (w *writeSkew) unitOptions() []uow.Option {
	return []uow.Option{uow.Isolation(sql.LevelSerializable), uow.Retry(w.Policy)}
}

// attempt is the handler's work for the request whose body is body: it
// returns the text to answer with 201, or the database error.
func (w *writeSkew) attempt(ctx context.Context, body string) (string, error) {
	n, _ := w.attempts.LoadOrStore(body, new(atomic.Int64))
	attempt := n.(*atomic.Int64).Add(1)
	var count int
	if err := repo.From(ctx, w.DB).GetContext(ctx, &count, `SELECT count(*) FROM `+w.Table); err != nil {
		return "", err
	}
	if attempt == 1 {
		w.firstReads.Done()
		w.firstReads.Wait()
	}
	if err := w.Insert(ctx, body); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s saw %d", body, count), nil
}

// check sends the two requests to h at once and checks that both got 201
// with a body of their final attempt, in a serial order, that both rows are
// kept, and that every re-run went to OnRetry and to the Observer.
func (w *writeSkew) check(t *testing.T, h http.Handler) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	res := PostAll(srv.URL, "a", "b")
	assert.Equal(t, []int{201, 201}, []int{res[0].Status, res[1].Status}, res[0].Body+" / "+res[1].Body)
	bodies := []string{res[0].Body, res[1].Body}
	slices.Sort(bodies)
	assert.Contains(t, [][]string{{"a saw 0", "b saw 1"}, {"a saw 1", "b saw 0"}}, bodies,
		"a serial order, and only final attempts reached the clients")
	assert.Equal(t, 2, w.Rows(t))
	assert.GreaterOrEqual(t, w.retries.Load(), int64(1), "a re-run happened")
	assert.Equal(t, w.retries.Load(), w.observed.Load(), "every re-run reported to the Observer as EventRetry")
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
