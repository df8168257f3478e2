package uowecho_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowecho"
	"github.com/uowkit/uowkit/uow"
)

// discard is a ResponseWriter that allocates nothing, so that only Echo's,
// the handler's and the middleware's allocations are counted.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// TestNoDBRequestAllocations pins what a request that never touches the
// database costs in streaming mode, in allocations, which are exact. Echo
// builds its middleware chain for every request, which costs any middleware
// one allocation (measured with one that does nothing); uow's Begin costs
// what it costs for a unit that is never used (measured too); the
// middleware's own are two: its state, which also holds the writer, the
// decision and the hook queue, and the request carrying the unit's context.
// Not parallel: AllocsPerRun counts every allocation of the process.
func TestNoDBRequestAllocations(t *testing.T) {
	m := uow.New(nil)
	w := discard{h: http.Header{}}
	req := httptest.NewRequest("GET", "/healthz", nil)
	run := func(mw echo.MiddlewareFunc) float64 {
		e := echo.New()
		e.Logger.SetOutput(io.Discard)
		e.Use(mw)
		e.GET("/healthz", func(c echo.Context) error { return c.String(200, "ok") })
		return testing.AllocsPerRun(1000, func() { e.ServeHTTP(w, req) })
	}
	noop := run(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { return next(c) }
	})
	for _, tc := range []struct {
		name string
		opts nethttp.Options
	}{
		{"default", nethttp.Options{}},
		{"read-only safe methods", nethttp.Options{UnitOptions: nethttp.ReadOnlySafeMethods}},
	} {
		var opts []uow.Option
		if tc.opts.UnitOptions != nil {
			opts = tc.opts.UnitOptions(req)
		}
		unit := testing.AllocsPerRun(1000, func() {
			_, u := m.Begin(context.Background(), opts...)
			_ = u.Commit()
		})
		got := run(uowecho.TransactionWithOptions(m, tc.opts))
		t.Logf("%s: with a middleware that does nothing %v, with this one %v (+%v: uow's Begin and Commit %v)",
			tc.name, noop, got, got-noop, unit)
		if own := got - noop - unit; own != 2 {
			t.Errorf("%s: the middleware's own allocations: %v, want 2", tc.name, own)
		}
	}
}
