package webtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// The helpers below are for the checks each adapter makes of its own
// construction and cost, which cannot run as scenarios of a Stack's
// handler: what only differs between adapters is the package prefix of
// their panics and how a framework serves a request without them.

// Misconfiguration checks that the middleware panics at construction (when
// stack builds it), with the package prefix of its messages, for a nil
// manager and for each negative option, and not for a valid buffered setup
// with retry.
func Misconfiguration(t *testing.T, prefix string, stack Stack) {
	t.Helper()
	m := uow.New(nil)
	for _, tc := range []struct {
		m    *uow.Manager
		opts nethttp.Options
		want string
	}{
		{nil, nethttp.Options{}, "nil *uow.Manager"},
		{m, nethttp.Options{Buffer: -1}, "negative Options.Buffer"},
		{m, nethttp.Options{Timeout: -1}, "negative Options.Timeout"},
		{m, nethttp.Options{RetryAfter: -1}, "negative Options.RetryAfter"},
		{m, nethttp.Options{HookTimeout: -1}, "negative Options.HookTimeout"},
	} {
		assert.PanicsWithValue(t, prefix+": "+tc.want, func() { stack(Setup{M: tc.m, Options: tc.opts}) })
	}
	assert.NotPanics(t, func() {
		stack(Setup{M: m, Options: nethttp.Options{Buffer: 1, UnitOptions: RetryWith(retry.Policy{})}})
	})
}

// discard is a ResponseWriter that allocates nothing, so that only the
// framework's, the handler's and the middleware's allocations are counted.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// NoDBAllocations pins what a GET /healthz that never touches the database
// costs in streaming mode, in allocations, which are exact, with default
// options and with nethttp.ReadOnlySafeMethods: the middleware's own must
// be two. They are what the handler that with returns (the middleware of m,
// configured by the options, in front of a handler answering "ok") costs,
// less what baseline costs (the same without the middleware, or with one
// that does nothing) and what uow's Begin and Commit cost for a unit that
// is never used, measured here too. Call it from a test that is not
// parallel: AllocsPerRun counts every allocation of the process.
func NoDBAllocations(t *testing.T, baseline http.Handler, with func(m *uow.Manager, o nethttp.Options) http.Handler) {
	t.Helper()
	m := uow.New(nil)
	w := discard{h: http.Header{}}
	req := httptest.NewRequest("GET", "/healthz", nil)
	run := func(h http.Handler) float64 {
		return testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, req) })
	}
	bare := run(baseline)
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
		got := run(with(m, tc.opts))
		t.Logf("%s: baseline %v, with the middleware %v (+%v: uow's Begin and Commit %v)", tc.name, bare, got, got-bare, unit)
		if own := got - bare - unit; own != 2 {
			t.Errorf("%s: the middleware's own allocations: %v, want 2", tc.name, own)
		}
	}
}

// BenchmarkHealthz runs GET /healthz through h as the sub-benchmark name,
// reporting allocations; every response must be 200.
func BenchmarkHealthz(b *testing.B, name string, h http.Handler) {
	b.Run(name, func(b *testing.B) {
		req := httptest.NewRequest("GET", "/healthz", nil)
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatal(rec.Code)
			}
		}
	})
}
