package webtest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// The scenarios below are the middleware behaviours whose logic does not
// depend on the framework: each adapter's test supplies only the handler,
// written the way that framework writes one.

// NoRoundTrip serves 50 GET /healthz through the handler that build returns
// for a manager on a counting connection, and checks that none of them
// reached the database: no statement, BEGIN, COMMIT or ROLLBACK sent, no
// observer event, no connection opened. The handler must answer 200.
func NoRoundTrip(t *testing.T, tag string, build func(m *uow.Manager) http.Handler) {
	t.Helper()
	db, counts := pgtest.OpenCounting(t, tag)
	var events atomic.Int64
	m := uow.New(db, uow.WithObserver(uow.ObserverFunc(func(context.Context, uow.Event) { events.Add(1) })))
	srv := httptest.NewServer(build(m))
	defer srv.Close()
	for range 50 {
		require.Equal(t, 200, Send(t, srv.URL, "GET", "/healthz", "").Status)
	}
	assert.Zero(t, counts.Total(), "statements, BEGINs, COMMITs, ROLLBACKs sent")
	assert.Zero(t, events.Load(), "observer events (no begin, commit or rollback)")
	assert.Zero(t, db.Stats().OpenConnections, "connections ever kept open")
}

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
	all := append(modes(), mode{"buffered with retry", nethttp.Options{
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

// WriteSkew is two serializable requests that each count a table's rows and
// then insert one, their first attempts waiting for each other in between:
// one of them must fail with 40001 (at the INSERT or at COMMIT), and buffered
// retry must re-run it until both succeed in some serial order.
type WriteSkew struct {
	*Env
	// M is a manager on the Env's database whose Observer counts EventRetry.
	M *uow.Manager
	// Policy is the retry policy of the scenario's units (UnitOptions),
	// which buffered mode re-runs the handler by; its OnRetry counts.
	Policy retry.Policy

	retries, observed atomic.Int64
	firstReads        sync.WaitGroup
	attempts          sync.Map // body → *atomic.Int64
}

// NewWriteSkew prepares the scenario on the database of tag.
func NewWriteSkew(t *testing.T, tag string) *WriteSkew {
	env := NewEnv(t, tag)
	w := &WriteSkew{Env: env}
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

// UnitOptions are the options of the scenario's units: serializable, with
// Policy.
func (w *WriteSkew) UnitOptions() []uow.Option {
	return []uow.Option{uow.Isolation(sql.LevelSerializable), uow.Retry(w.Policy)}
}

// Attempt is the handler's work for the request whose body is body: it
// returns the text to answer with 201, or the database error.
func (w *WriteSkew) Attempt(ctx context.Context, body string) (string, error) {
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

// Check sends the two requests to h at once and checks that both got 201
// with a body of their final attempt, in a serial order, that both rows are
// kept, and that every re-run went to OnRetry and to the Observer.
func (w *WriteSkew) Check(t *testing.T, h http.Handler) {
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

// failureResponse checks an application's failure writer, in every mode:
// a handler inserts a row, sets an X-Handler header and answers 201, and
// its COMMIT fails (23514, then 40001). The client must get 500, then 503
// with Retry-After, in the failure writer's JSON, without the handler's
// header or body, although the writer tries to send 200; the writer gets
// the request and the unit's error.
func failureResponse(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range modes() {
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
	for _, mode := range modes() {
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
	for _, mode := range modes() {
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
	for _, mode := range modes() {
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
	for _, mode := range modes() {
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
