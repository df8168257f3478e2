package nethttp_test

import (
	"net/http"
	"testing"

	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/uow"
)

// TestNoDBRequestAllocations pins what a request that never touches the
// database costs in streaming mode, in allocations, which are exact: against
// the bare handler, the middleware's own are two (its writer, which also
// holds the decision and the hook queue, and the request carrying the unit's
// context); the rest is what uow's Begin costs for a unit that is never
// used. Not parallel: AllocsPerRun counts every allocation of the process.
func TestNoDBRequestAllocations(t *testing.T) {
	healthz := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	webtest.NoDBAllocations(t, healthz, func(m *uow.Manager, o nethttp.Options) http.Handler {
		return nethttp.TransactionWithOptions(m, o)(healthz)
	})
}
