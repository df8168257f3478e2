package webtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/uow"
)

// requestKey carries a value an outer middleware puts on the request.
type requestKey struct{}

func (requestKey) String() string { return "webtest.requestKey" }

// hookRun is what a hook saw when it ran.
type hookRun struct {
	phase    string
	deadline time.Time
	value    any   // the request value
	rows     int   // rows committed, counted on another connection
	err      error // of the count
}

// hooksAfterResponse checks, in every mode, that the units' after-commit and
// after-rollback hooks run after the response, not before it: each hook
// waits until the client has read the whole response, which it could never
// do if the hooks held it back (the test gives up after 30 s, then fails).
// A 201 runs the after-commit hook, after the commit (it sees the row from
// another connection); a 409 runs only the after-rollback hook. A hook's
// context carries the request's values (set by an outer middleware) and a
// deadline, HookTimeout from its start.
func hooksAfterResponse(t *testing.T, tag string, stack Stack) {
	t.Helper()
	const hookTimeout = 5 * time.Minute
	for _, mode := range Modes() {
		for _, tc := range []struct {
			name   string
			status int
			phase  string
			rows   int
		}{
			{"201: after-commit", http.StatusCreated, "after-commit", 1},
			{"409: after-rollback", http.StatusConflict, "after-rollback", 0},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := NewEnv(t, tag)
				release := make(chan struct{})
				ran := make(chan hookRun, 2)
				hook := func(phase string) uow.Hook {
					return func(ctx context.Context) error {
						select {
						case <-release: // the client has its response
						case <-ctx.Done():
						}
						run := hookRun{phase: phase, value: ctx.Value(requestKey{})}
						run.deadline, _ = ctx.Deadline()
						run.err = e.DB.GetContext(ctx, &run.rows, `SELECT count(*) FROM `+e.Table)
						ran <- run
						return nil
					}
				}
				s := mode.Options
				s.HookTimeout = hookTimeout
				outer := func(w http.ResponseWriter, r *http.Request, next func(*http.Request)) {
					next(r.WithContext(context.WithValue(r.Context(), requestKey{}, "from the request")))
				}
				h := stack(Setup{M: e.M, Options: s, Outer: outer, Handler: func(w http.ResponseWriter, r *http.Request) error {
					ctx := r.Context()
					if err := e.Insert(ctx, "x"); err != nil {
						return err
					}
					if err := uow.AfterCommit(ctx, hook("after-commit")); err != nil {
						return err
					}
					if err := uow.AfterRollback(ctx, hook("after-rollback")); err != nil {
						return err
					}
					w.WriteHeader(tc.status)
					_, err := fmt.Fprint(w, "the whole body")
					return err
				}})
				srv := httptest.NewServer(h)
				defer srv.Close()

				sent := Go(context.Background(), srv.URL, "POST", "/", "")
				var res Sent
				select {
				case res = <-sent:
				case <-time.After(30 * time.Second):
					close(release)
					<-ran
					t.Fatal("the response waited for the hook")
				}
				close(release) // only now may the hook finish
				run := <-ran

				require.NoError(t, res.Err)
				assert.Equal(t, tc.status, res.Status)
				assert.Equal(t, "the whole body", res.Body)
				assert.Equal(t, tc.phase, run.phase, "the hook that ran")
				require.NoError(t, run.err)
				assert.Equal(t, tc.rows, run.rows, "rows committed when the hook ran")
				assert.Equal(t, "from the request", run.value, "the request's values")
				require.False(t, run.deadline.IsZero(), "the hook's context has a deadline")
				assert.Greater(t, time.Until(run.deadline), hookTimeout/2, "the deadline is HookTimeout's")
				select {
				case other := <-ran:
					t.Errorf("the %s hook ran too", other.phase)
				default:
				}
			})
		}
	}
}
