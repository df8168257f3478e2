package webtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// The scenarios below are the middleware behaviours whose logic does not
// depend on the framework: each adapter's test supplies only the handler,
// written the way that framework writes one.

// twoDatabases runs, in every mode and with buffered retry, a handler that
// inserts into both databases of a Pair (through [Pair.Insert], with the
// request's "violate" query parameter), then answers 201, or 422 when the
// "status" query parameter is set. Both commit, or both roll back. When the
// second COMMIT fails after the first one succeeded, the client gets 500 —
// never 503 with Retry-After, even for a serialization failure: resending
// would apply the first source's work twice — and the error hook is told of
// the partial commit.
func twoDatabases(t *testing.T, tag string, stack Stack) {
	t.Helper()
	all := append(Modes(), Mode{"buffered with retry", nethttp.Options{
		Buffer: 1 << 16, UnitOptions: RetryWith(retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond})}})
	for _, mode := range all {
		for _, tc := range []struct {
			name     string
			path     string
			conflict bool // the second source's COMMIT fails with 40001
			status   int
			a, b     int  // rows kept in each database
			partial  bool // the error hook is told of a partial commit
		}{
			{"both commit", "/", false, 201, 1, 1, false},
			{"422: both roll back", "/?status=422", false, 422, 0, 0, false},
			{"first source's COMMIT fails: both roll back", "/?violate=a", false, 500, 0, 0, false},
			// The documented limit: no two-phase commit.
			{"second source's COMMIT fails after the first committed", "/?violate=b", false, 500, 1, 0, true},
			{"second source's COMMIT fails with 40001 after the first committed: 500, not 503", "/", true, 500, 1, 0, true},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				p := NewPair(t, tag)
				if tc.conflict {
					CommitConflicts(t, p.B, p.TB, 1)
				}
				var reported Errors
				s := mode.Options
				s.ErrorHandler = reported.Handle
				h := stack(Setup{M: p.M, Options: s, Handler: func(w http.ResponseWriter, r *http.Request) error {
					if err := p.Insert(r.Context(), r.URL.Query().Get("violate")); err != nil {
						return err
					}
					status := http.StatusCreated
					if r.URL.Query().Get("status") != "" {
						status = http.StatusUnprocessableEntity
					}
					w.WriteHeader(status)
					return nil
				}})
				res := Serve(t, h, "POST", tc.path, "")
				assert.Equal(t, tc.status, res.Status)
				assert.Empty(t, res.Header.Get("Retry-After"))
				a, b := p.Rows(t)
				assert.Equal(t, [2]int{tc.a, tc.b}, [2]int{a, b}, "rows kept in a and b")
				if tc.status == 500 {
					assert.Equal(t, tc.partial, errors.Is(reported.One(t), uow.ErrPartialCommit))
				}
			})
		}
	}
}

// failureResponse checks an application's failure writer, in every mode:
// a handler inserts a row, sets an X-Handler header and answers 201, and
// its COMMIT fails (23514, then 40001). The client must get 500, then 503
// with Retry-After, in the failure writer's JSON, without the handler's
// header or body, although the writer tries to send 200; the writer gets
// the request and the unit's error.
func failureResponse(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		for _, tc := range []struct {
			name       string
			sqlstate   string
			status     int
			retryAfter string
		}{
			{"COMMIT fails: 500", "23514", 500, ""},
			{"COMMIT fails retryably: 503", "40001", 503, "1"},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := NewEnv(t, tag)
				CommitFailures(t, e.DB, e.Table, 1, tc.sqlstate)
				var got Errors
				s := mode.Options
				s.ErrorHandler = func(*http.Request, error) {}
				s.FailureResponse = func(w http.ResponseWriter, r *http.Request, status int, err error) {
					got.Handle(r, err)
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusOK) // pinned: the client still gets status
					_ = json.NewEncoder(w).Encode(map[string]any{"error": "not saved", "status": status})
				}
				h := stack(Setup{M: e.M, Options: s, Handler: func(w http.ResponseWriter, r *http.Request) error {
					if err := e.Insert(r.Context(), "x"); err != nil {
						return err
					}
					w.Header().Set("X-Handler", "yes")
					w.WriteHeader(http.StatusCreated)
					_, err := fmt.Fprint(w, "created")
					return err
				}})
				res := Serve(t, h, "POST", "/", "")
				assert.Equal(t, tc.status, res.Status)
				assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
				assert.JSONEq(t, fmt.Sprintf(`{"error":"not saved","status":%d}`, tc.status), res.Body)
				assert.Empty(t, res.Header.Get("X-Handler"), "none of the handler's headers")
				assert.Equal(t, tc.retryAfter, res.Header.Get("Retry-After"))
				var ce *uow.CommitError
				assert.ErrorAs(t, got.One(t), &ce, "the writer runs once and is given the unit's error")
				assert.Zero(t, e.Rows(t))
			})
		}
	}
}

// commitPolicy checks, in every mode, that the middleware asks its commit
// policy (Settings.Commit) about the final status, and about a hijack as a
// 101. Each handler first inserts one row.
func commitPolicy(t *testing.T, tag string, stack Stack) {
	t.Helper()
	below500 := func(status int) bool { return status < 500 }
	only2xx := func(status int) bool { return status >= 200 && status < 300 }
	writeStatus := func(code int) func(http.ResponseWriter) error {
		return func(w http.ResponseWriter) error { w.WriteHeader(code); return nil }
	}
	for _, mode := range Modes() {
		for _, tc := range []struct {
			name   string
			commit func(int) bool
			do     func(w http.ResponseWriter) error
			status int
			rows   int
		}{
			{"409 commits when the policy says so", below500, writeStatus(409), 409, 1},
			{"500 still rolls back", below500, writeStatus(500), 500, 0},
			{"302 rolls back under 2xx-only", only2xx, writeStatus(302), 302, 0},
			{"hijack is asked as 101: rolled back under 2xx-only", only2xx, func(w http.ResponseWriter) error {
				return HijackReply(w, "hijacked", func() {})
			}, 200, 0},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := NewEnv(t, tag)
				s := mode.Options
				s.Commit = tc.commit
				h := stack(Setup{M: e.M, Options: s, Handler: func(w http.ResponseWriter, r *http.Request) error {
					if err := e.Insert(r.Context(), "x"); err != nil {
						return err
					}
					return tc.do(w)
				}})
				assert.Equal(t, tc.status, Serve(t, h, "POST", "/", "").Status)
				assert.Equal(t, tc.rows, e.Rows(t))
			})
		}
	}
}

// handlerError checks, in every mode, that a handler that inserted a row
// and then failed without writing anything (its error goes to the
// framework: net/http's stack answers it, Echo's error handler, Gin's
// c.Error) gets 500 and keeps nothing, whichever part answers it.
func handlerError(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			e := NewEnv(t, tag)
			h := stack(Setup{M: e.M, Options: mode.Options, Handler: func(w http.ResponseWriter, r *http.Request) error {
				if err := e.Insert(r.Context(), "x"); err != nil {
					return err
				}
				return errors.New("the handler failed")
			}})
			assert.Equal(t, 500, Serve(t, h, "POST", "/", "").Status)
			assert.Zero(t, e.Rows(t))
		})
	}
}

// lateHeaders checks, in every mode, that headers changed after the status
// went out (at WriteHeader, or at the first Write) are not sent, as net/http
// ignores them, while trailers declared before it are sent after the body.
// The handler inserts a row and holds on to its header map, as handlers do.
func lateHeaders(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		for _, tc := range []struct {
			name   string
			status int // 0: the first Write sends 200
		}{
			{"after WriteHeader", 201},
			{"after the first Write", 0},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := NewEnv(t, tag)
				h := stack(Setup{M: e.M, Options: mode.Options, Handler: func(w http.ResponseWriter, r *http.Request) error {
					if err := e.Insert(r.Context(), "x"); err != nil {
						return err
					}
					h := w.Header()
					h.Set("X-Early", "yes")
					h.Set("Trailer", "X-Sum")
					if tc.status != 0 {
						w.WriteHeader(tc.status)
					}
					if _, err := fmt.Fprint(w, "body"); err != nil {
						return err
					}
					h.Set("X-Late", "yes")
					h.Set("X-Sum", "42")
					return nil
				}})
				res := Serve(t, h, "POST", "/", "")
				assert.Equal(t, max(tc.status, 200), res.Status)
				assert.Equal(t, "body", res.Body)
				assert.Equal(t, "yes", res.Header.Get("X-Early"))
				assert.Empty(t, res.Header.Get("X-Late"), "set after the status went out")
				assert.Equal(t, "42", res.Trailer.Get("X-Sum"), "a declared trailer")
				assert.Equal(t, 1, e.Rows(t))
			})
		}
	}
}

// panicRollsBackAtOnce panics in a handler that inserted a row. By the time
// the panic reaches a recovering middleware further out, while the request
// is still going on, the unit must be rolled back and its connection back
// in the pool, in every mode — not later, when net/http ends the request's
// context. The recoverer's 500 goes through.
func panicRollsBackAtOnce(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			e := NewEnv(t, tag)
			inUse, rows := -1, -1
			var ctxErr, countErr error
			recoverer := func(w http.ResponseWriter, r *http.Request, next func(*http.Request)) {
				defer func() {
					if recover() == nil {
						return
					}
					inUse, ctxErr = e.DB.Stats().InUse, r.Context().Err()
					countErr = e.DB.Get(&rows, `SELECT count(*) FROM `+e.Table)
					http.Error(w, "recovered", http.StatusInternalServerError)
				}()
				next(r)
			}
			h := stack(Setup{M: e.M, Options: mode.Options, Outer: recoverer, Handler: func(w http.ResponseWriter, r *http.Request) error {
				if err := e.Insert(r.Context(), "x"); err != nil {
					return err
				}
				panic("handler panic")
			}})
			res := Serve(t, h, "POST", "/", "")
			assert.Equal(t, 500, res.Status)
			assert.Equal(t, "recovered\n", res.Body)
			require.NoError(t, countErr)
			assert.NoError(t, ctxErr, "the request is still going on")
			assert.Zero(t, inUse, "connections in use when the panic reached the recoverer")
			assert.Zero(t, rows)
		})
	}
}

// panicAfterWriting panics in a handler that inserted a row and wrote 200
// "ok" (then flushed it, in one case), under the stack's own recoverer
// further out: the one place the modes differ. A streamed response went
// out, committed, when it was written: the client gets exactly what it
// gets without the unit's middleware (on a skipped path), whatever the
// recoverer then adds (net/http's glues its answer on; Echo's and Gin's
// see the response went out). A buffered one never went out, unless a
// flush sent it: it is rolled back, and the client gets exactly what the
// recoverer answers for a panic before any write, with nothing of the
// dropped response.
func panicAfterWriting(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, tc := range []struct {
		name  string
		opts  nethttp.Options
		flush bool
		sent  bool // the 200 went out before the panic
	}{
		{"streaming", nethttp.Options{}, false, true},
		{"buffered", nethttp.Options{Buffer: 1 << 10}, false, false},
		{"buffered, flushed", nethttp.Options{Buffer: 1 << 10}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := NewEnv(t, tag)
			s := tc.opts
			s.Skipper = func(r *http.Request) bool { return r.URL.Path == "/without-unit" }
			h := stack(Setup{M: e.M, Options: s, Handler: func(w http.ResponseWriter, r *http.Request) error {
				switch r.URL.Path {
				case "/at-once":
					panic("before writing")
				case "/":
					if err := e.Insert(r.Context(), "x"); err != nil {
						return err
					}
				}
				w.WriteHeader(http.StatusOK)
				_, _ = fmt.Fprint(w, "ok")
				if tc.flush {
					if err := http.NewResponseController(w).Flush(); err != nil {
						return err
					}
				}
				panic("after writing")
			}})
			want, rows := Serve(t, h, "POST", "/without-unit", ""), 1
			require.Equal(t, 200, want.Status, "without the unit's middleware")
			require.True(t, strings.HasPrefix(want.Body, "ok"), "without the unit's middleware: %q", want.Body)
			if !tc.sent {
				want, rows = Serve(t, h, "POST", "/at-once", ""), 0
				require.Equal(t, 500, want.Status, "the recoverer's answer to a panic")
			}
			res := Serve(t, h, "POST", "/", "")
			assert.Equal(t, want.Status, res.Status)
			assert.Equal(t, want.Body, res.Body)
			assert.Equal(t, rows, e.Rows(t))
		})
	}
}

// successNotCommitted checks, in every mode, the two ways a handler that
// answers with success still keeps nothing. It asked for a rollback
// (uow.SetRollbackOnly): its 200 goes through. Or a statement failed and
// the handler swallowed the error: the unit cannot commit, and the client
// gets 500 instead of the 201. Each handler first inserts a row.
func successNotCommitted(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		for _, tc := range []struct {
			name   string
			do     func(e *Env, w http.ResponseWriter, r *http.Request) error
			status int
			body   string
		}{
			{"SetRollbackOnly with 200", func(_ *Env, w http.ResponseWriter, r *http.Request) error {
				if err := uow.SetRollbackOnly(r.Context()); err != nil {
					return err
				}
				_, err := fmt.Fprint(w, "dry run")
				return err
			}, 200, "dry run"},
			{"swallowed statement error, then 201", func(e *Env, w http.ResponseWriter, r *http.Request) error {
				_, _ = repo.From(r.Context(), e.DB).ExecContext(r.Context(), `SELECT 1/0`)
				w.WriteHeader(http.StatusCreated)
				_, _ = fmt.Fprint(w, "success")
				return nil
			}, 500, "Internal Server Error\n"},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := NewEnv(t, tag)
				h := stack(Setup{M: e.M, Options: mode.Options, Handler: func(w http.ResponseWriter, r *http.Request) error {
					if err := e.Insert(r.Context(), "x"); err != nil {
						return err
					}
					return tc.do(e, w, r)
				}})
				res := Serve(t, h, "POST", "/", "")
				assert.Equal(t, tc.status, res.Status)
				assert.Equal(t, tc.body, res.Body)
				assert.Zero(t, e.Rows(t))
			})
		}
	}
}

// clientDisconnect lets the client go away while the handler, having
// inserted a row, waits for the request's context to end. In every mode the
// unit rolls back by itself when it does: the handler's next statement
// finds it finished, nothing is kept, and once the unit is over no
// connection is in use. (Its statements fail as soon as it starts rolling
// back, before its connection is back in the pool: the Observer's
// EventUnit, reported when the rollback is done, says when it is over.)
func clientDisconnect(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		t.Run(mode.Name, func(t *testing.T) {
			t.Parallel()
			e := NewEnv(t, tag)
			over := make(chan struct{})
			ended := sync.OnceFunc(func() { close(over) })
			m := uow.New(e.DB, uow.WithObserver(uow.ObserverFunc(func(_ context.Context, ev uow.Event) {
				if ev.Kind == uow.EventUnit {
					ended()
				}
			})))
			inserted, finished := make(chan struct{}), make(chan struct{})
			var late error
			h := stack(Setup{M: m, Options: mode.Options, Handler: func(w http.ResponseWriter, r *http.Request) error {
				defer close(finished)
				ctx := r.Context()
				if err := e.Insert(ctx, "x"); err != nil {
					return err
				}
				close(inserted)
				<-ctx.Done() // the client went away
				late = e.Insert(ctx, "late")
				_, _ = fmt.Fprint(w, "too late")
				return nil
			}})
			srv := httptest.NewServer(h)
			defer srv.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				<-inserted
				cancel()
			}()
			res := <-Go(ctx, srv.URL, "POST", "/", "")
			require.ErrorIs(t, res.Err, context.Canceled)
			<-finished
			assert.Error(t, late, "statements after the client left")
			select {
			case <-over:
			case <-time.After(30 * time.Second):
				t.Fatal("the unit was not over after 30 s")
			}
			assert.Zero(t, e.Rows(t))
			assert.Zero(t, e.DB.Stats().InUse, "connections in use once the unit is over")
		})
	}
}
