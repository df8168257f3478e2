package uowgin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowgin"
	"github.com/uowkit/uowkit/uow"
)

// discard is a ResponseWriter that allocates nothing, so that only Gin's,
// the handler's and the middleware's allocations are counted.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// TestNoDBRequestAllocations pins what a request that never touches the
// database costs in streaming mode, in allocations, which are exact. A
// middleware that does nothing is the baseline (Gin allocates nothing for
// it); uow's Begin costs what it costs for a unit that is never used
// (measured too); the middleware's own are two: its state, which holds the
// gin.ResponseWriter it puts in c.Writer, the shared middleware's writer,
// decision and hook queue, and the request carrying the unit's context.
// Not parallel: AllocsPerRun counts every allocation of the process.
func TestNoDBRequestAllocations(t *testing.T) {
	if raceEnabled {
		// Gin keeps its Contexts in a sync.Pool, which drops a quarter of
		// them at random under the race detector: the count is noise.
		t.Skip("allocations are not exact under the race detector")
	}
	m := uow.New(nil)
	w := discard{h: http.Header{}}
	req := httptest.NewRequest("GET", "/healthz", nil)
	run := func(mw gin.HandlerFunc) float64 {
		r := gin.New()
		r.Use(mw)
		r.GET("/healthz", func(c *gin.Context) { c.String(200, "ok") })
		return testing.AllocsPerRun(1000, func() { r.ServeHTTP(w, req) })
	}
	noop := run(func(c *gin.Context) { c.Next() })
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
		got := run(uowgin.TransactionWithOptions(m, tc.opts))
		t.Logf("%s: with a middleware that does nothing %v, with this one %v (+%v: uow's Begin and Commit %v)",
			tc.name, noop, got, got-noop, unit)
		if own := got - noop - unit; own != 2 {
			t.Errorf("%s: the middleware's own allocations: %v, want 2", tc.name, own)
		}
	}
}
