package nethttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/uow"
)

// discard is a ResponseWriter that allocates nothing, so that only the
// handler's and the middleware's allocations are counted.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// TestNoDBRequestAllocations pins what a request that never touches the
// database costs in streaming mode, in allocations, which are exact: the
// middleware's own are two (its writer, which also holds the decision and
// the hook queue, and the request carrying the unit's context); the rest is
// what uow's Begin costs for a unit that is never used, measured here too.
// Not parallel: AllocsPerRun counts every allocation of the process.
func TestNoDBRequestAllocations(t *testing.T) {
	m := uow.New(nil)
	healthz := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	w := discard{h: http.Header{}}
	req := httptest.NewRequest("GET", "/healthz", nil)
	run := func(h http.Handler) float64 {
		return testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, req) })
	}
	bare := run(healthz)
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
		got := run(nethttp.TransactionWithOptions(m, tc.opts)(healthz))
		t.Logf("%s: bare %v, with the middleware %v (+%v: uow's Begin and Commit %v)", tc.name, bare, got, got-bare, unit)
		if own := got - bare - unit; own != 2 {
			t.Errorf("%s: the middleware's own allocations: %v, want 2", tc.name, own)
		}
	}
}
