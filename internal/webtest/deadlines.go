package webtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
)

// deadline checks the middleware's deadline (Settings.Timeout), in every
// mode. When it passes before the decision, the unit is rolled back and the
// client gets 504, unless the handler answers with its own error status.
// And the deadline is the request's, not the unit's: after the decision (a
// WriteHeader, a flush, a hijack), the handler's context is still alive and
// still carries the deadline, so a handler that goes on streaming or
// serving a hijacked connection is not cut off by the commit. Handlers call
// alive right after the decision.
func deadline(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		for _, tc := range []struct {
			name    string
			timeout time.Duration
			noDB    bool // no row inserted before do
			do      func(e *Env, w http.ResponseWriter, r *http.Request, alive func()) error
			status  int
			body    string
			rows    int
		}{
			{"a statement interrupted at the deadline: 504", 2 * time.Second, false, // ample for the INSERT
				func(e *Env, w http.ResponseWriter, r *http.Request, _ func()) error {
					if _, err := repo.From(r.Context(), e.DB).ExecContext(r.Context(), `SELECT pg_sleep(30)`); err == nil {
						return errors.New("pg_sleep(30) was not interrupted")
					}
					_, err := fmt.Fprint(w, "done") // the middleware must not commit
					return err
				}, 504, "Gateway Timeout\n", 0},
			{"no database work, the deadline passes before the decision: 504", 10 * time.Millisecond, true,
				func(_ *Env, w http.ResponseWriter, r *http.Request, _ func()) error {
					<-r.Context().Done()
					_, err := fmt.Fprint(w, "done")
					return err
				}, 504, "Gateway Timeout\n", 0},
			{"the handler answers the deadline with its own 408: it goes through", 10 * time.Millisecond, true,
				func(e *Env, w http.ResponseWriter, r *http.Request, _ func()) error {
					_ = e.Insert(r.Context(), "x") // may meet the deadline itself
					<-r.Context().Done()
					w.WriteHeader(http.StatusRequestTimeout)
					_, err := fmt.Fprint(w, "too slow")
					return err
				}, 408, "too slow", 0},
			{"WriteHeader, then the context lives on", time.Minute, false,
				func(_ *Env, w http.ResponseWriter, _ *http.Request, alive func()) error {
					w.WriteHeader(http.StatusCreated)
					alive()
					_, err := fmt.Fprint(w, "created")
					return err
				}, 201, "created", 1},
			{"flush, then the context lives on", time.Minute, false,
				func(_ *Env, w http.ResponseWriter, _ *http.Request, alive func()) error {
					fmt.Fprint(w, "event 1\n")
					if err := http.NewResponseController(w).Flush(); err != nil {
						return err
					}
					alive()
					_, err := fmt.Fprint(w, "event 2\n")
					return err
				}, 200, "event 1\nevent 2\n", 1},
			{"hijack, then the context lives on", time.Minute, false,
				func(_ *Env, w http.ResponseWriter, _ *http.Request, alive func()) error {
					return HijackReply(w, "hijacked", alive)
				}, 200, "hijacked", 1},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := NewEnv(t, tag)
				s := mode.Options
				s.Timeout = tc.timeout
				var seen Errors // what alive found, from the handler's goroutine
				h := stack(Setup{M: e.M, Options: s, Handler: func(w http.ResponseWriter, r *http.Request) error {
					if !tc.noDB {
						if err := e.Insert(r.Context(), "x"); err != nil {
							return err
						}
					}
					return tc.do(e, w, r, func() {
						err := r.Context().Err()
						if _, ok := r.Context().Deadline(); !ok && err == nil {
							err = errors.New("the handler's context has no deadline")
						}
						seen.Add(err)
					})
				}})
				res := Serve(t, h, "POST", "/", "")
				assert.Equal(t, tc.status, res.Status)
				assert.Equal(t, tc.body, res.Body)
				assert.Equal(t, tc.rows, e.Rows(t))
				if tc.rows > 0 {
					require.Len(t, seen.List(), 1)
					assert.NoError(t, seen.List()[0], "the handler's context after the decision")
				}
			})
		}
	}
}

// retryBackoffEnds ends the request's context, as an outer middleware's
// deadline or a client that left would, while buffered retry waits to
// re-run a handler whose COMMIT failed with 40001. The client gets 503 when
// the context was cancelled and 504 when its deadline passed, never
// net/http's implicit 200; the handler is not run again.
func retryBackoffEnds(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, tc := range []struct {
		name   string
		end    error
		status int
	}{
		{"cancelled: 503", context.Canceled, 503},
		{"deadline: 504", context.DeadlineExceeded, 504},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := NewEnv(t, tag)
			CommitConflicts(t, e.DB, e.Table, 10)
			var end func() // the request's context's
			var runs atomic.Int64
			var reported Errors
			s := nethttp.Options{Buffer: 1 << 10, ErrorHandler: reported.Handle, UnitOptions: RetryWith(retry.Policy{
				MaxAttempts: 5, OnRetry: func(context.Context, int, time.Duration, error) { end() }})}
			outer := func(w http.ResponseWriter, r *http.Request, next func(*http.Request)) {
				ctx, stop := endOnDemand(r.Context(), tc.end)
				defer stop()
				end = stop
				next(r.WithContext(ctx))
			}
			h := stack(Setup{M: e.M, Options: s, Outer: outer, Handler: func(w http.ResponseWriter, r *http.Request) error {
				runs.Add(1)
				if err := e.Insert(r.Context(), "x"); err != nil {
					return err
				}
				w.WriteHeader(http.StatusCreated)
				return nil
			}})
			res := Serve(t, h, "POST", "/", "")
			assert.Equal(t, tc.status, res.Status)
			assert.EqualValues(t, 1, runs.Load(), "handler runs")
			assert.Zero(t, e.Rows(t))
			assert.ErrorIs(t, reported.One(t), tc.end)
		})
	}
}

// largeRequestBody sends request bodies, in buffered mode with retry (Buffer
// 32), to a handler that reads its body, inserts a row and answers 201, and
// whose first COMMIT fails with 40001. A body that fits the buffer is
// replayed whole to a second run. A larger one is not kept: it reaches the
// handler whole, once, and the failure is answered 503 instead of retried.
func largeRequestBody(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, tc := range []struct {
		name   string
		body   string
		status int
		runs   int
		rows   int
	}{
		{"a body of Buffer bytes is replayed to a second run", strings.Repeat("s", 32), 201, 2, 1},
		{"a body one byte over Buffer reaches the handler whole, once: 503", strings.Repeat("b", 33), 503, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := NewEnv(t, tag)
			CommitConflicts(t, e.DB, e.Table, 1)
			var read []string // the body each run read
			s := nethttp.Options{Buffer: 32, ErrorHandler: func(*http.Request, error) {},
				UnitOptions: RetryWith(retry.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond})}
			h := stack(Setup{M: e.M, Options: s, Handler: func(w http.ResponseWriter, r *http.Request) error {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					return err
				}
				read = append(read, string(b))
				if err := e.Insert(r.Context(), "x"); err != nil {
					return err
				}
				w.WriteHeader(http.StatusCreated)
				return nil
			}})
			res := Serve(t, h, "POST", "/", tc.body)
			assert.Equal(t, tc.status, res.Status)
			require.Len(t, read, tc.runs, "handler runs")
			for _, b := range read {
				assert.Equal(t, tc.body, b, "the body a run read")
			}
			assert.Equal(t, tc.rows, e.Rows(t))
		})
	}
}
