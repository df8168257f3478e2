package webtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// noRoundTrip serves 50 GET /healthz, under each set of options, through a
// handler that answers 200 without database work, for a manager on a
// counting connection, and checks that none of them reached the database:
// no statement, BEGIN, COMMIT or ROLLBACK sent, no observer event, no
// connection opened.
func noRoundTrip(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, tc := range []struct {
		name string
		opts nethttp.Options
	}{
		{"default", nethttp.Options{}},
		{"read-only safe methods, timeout", nethttp.Options{UnitOptions: nethttp.ReadOnlySafeMethods, Timeout: time.Minute}},
		{"read-only safe methods, timeout, error handler", nethttp.Options{
			UnitOptions: nethttp.ReadOnlySafeMethods, Timeout: time.Minute, ErrorHandler: func(*http.Request, error) {}}},
		{"buffered with retry", nethttp.Options{Buffer: 1 << 10, UnitOptions: RetryWith(retry.Policy{})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, counts := pgtest.OpenCounting(t, tag)
			var events atomic.Int64
			m := uow.New(db, uow.WithObserver(uow.ObserverFunc(func(context.Context, uow.Event) { events.Add(1) })))
			srv := httptest.NewServer(stack(Setup{M: m, Options: tc.opts, Handler: func(w http.ResponseWriter, _ *http.Request) error {
				_, err := fmt.Fprint(w, "healthy")
				return err
			}}))
			defer srv.Close()
			for range 50 {
				require.Equal(t, 200, Send(t, srv.URL, "GET", "/healthz", "").Status)
			}
			assert.Zero(t, counts.Total(), "statements, BEGINs, COMMITs, ROLLBACKs sent")
			assert.Zero(t, events.Load(), "observer events (no begin, commit or rollback)")
			assert.Zero(t, db.Stats().OpenConnections, "connections ever kept open")
		})
	}
}

// skipperAndReadOnlySafeMethods checks Options.Skipper and
// nethttp.ReadOnlySafeMethods together: a handler that inserts a row and
// answers 204 runs in a read-only unit for GET, HEAD and OPTIONS (its
// INSERT fails with 25006), in a read-write one for POST, and with no unit
// at all on a skipped path, where the statement autocommits on the pool.
func skipperAndReadOnlySafeMethods(t *testing.T, tag string, stack Stack) {
	t.Helper()
	e := NewEnv(t, tag)
	var got error
	h := stack(Setup{M: e.M, Options: nethttp.Options{
		UnitOptions: nethttp.ReadOnlySafeMethods,
		Skipper:     func(r *http.Request) bool { return r.URL.Path == "/skip" },
	}, Handler: func(w http.ResponseWriter, r *http.Request) error {
		got = e.Insert(r.Context(), "x")
		w.WriteHeader(http.StatusNoContent)
		return nil
	}})
	for _, method := range []string{"GET", "HEAD", "OPTIONS"} {
		Serve(t, h, method, "/", "")
		code, _ := retry.SQLState(got)
		assert.Equal(t, "25006", code, "%s runs read-only", method)
	}
	Serve(t, h, "POST", "/", "")
	require.NoError(t, got, "POST runs read-write")
	Serve(t, h, "GET", "/skip", "")
	require.NoError(t, got, "skipped: no unit, the statement autocommits on the pool")
	assert.Equal(t, 2, e.Rows(t))
}
