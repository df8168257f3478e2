package webtest

import (
	"context"
	"database/sql"
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

// TwoDatabases runs a handler that inserts into both databases of a Pair
// (through [Pair.Insert], with the request's "violate" query parameter),
// then answers ok, or 422 when the "status" query parameter is set. build
// wires it with the pair's manager and an error hook that calls report.
// Both commit, or both roll back; when the second COMMIT fails after the
// first one succeeded, the client gets 500 and the hook is told of the
// partial commit.
func TwoDatabases(t *testing.T, tag string, ok int, build func(p *Pair, report func(error)) http.Handler) {
	t.Helper()
	for _, tc := range []struct {
		name    string
		path    string
		status  int
		a, b    int  // rows kept in each database
		partial bool // the error hook is told of a partial commit
	}{
		{"both commit", "/", ok, 1, 1, false},
		{"422: both roll back", "/?status=422", 422, 0, 0, false},
		{"first source's COMMIT fails: both roll back", "/?violate=a", 500, 0, 0, false},
		// The documented limit: no two-phase commit.
		{"second source's COMMIT fails after the first committed", "/?violate=b", 500, 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := NewPair(t, tag)
			var reported Errors
			res := Serve(t, build(p, reported.Add), "POST", tc.path, "")
			assert.Equal(t, tc.status, res.Status)
			a, b := p.Rows(t)
			assert.Equal(t, [2]int{tc.a, tc.b}, [2]int{a, b}, "rows kept in a and b")
			if tc.status == 500 {
				require.Len(t, reported.List(), 1)
				assert.Equal(t, tc.partial, errors.Is(reported.List()[0], uow.ErrPartialCommit))
			}
		})
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
	// Policy is the retry policy to give the middleware; its OnRetry counts.
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

// UnitOptions are the options of the scenario's units: serializable.
func (w *WriteSkew) UnitOptions() []uow.Option {
	return []uow.Option{uow.Isolation(sql.LevelSerializable)}
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
