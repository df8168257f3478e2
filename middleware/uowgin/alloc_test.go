package uowgin_test

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowgin"
	"github.com/uowkit/uowkit/uow"
)

// TestNoDBRequestAllocations pins what a request that never touches the
// database costs in streaming mode, in allocations, which are exact. A
// middleware that does nothing is the baseline (Gin allocates nothing for
// it); uow's Begin costs what it costs for a unit that is never used; the
// middleware's own are two: its state, which holds the gin.ResponseWriter
// it puts in c.Writer, the shared middleware's writer, decision and hook
// queue, and the request carrying the unit's context. Not parallel:
// AllocsPerRun counts every allocation of the process.
func TestNoDBRequestAllocations(t *testing.T) {
	if raceEnabled {
		// Gin keeps its Contexts in a sync.Pool, which drops a quarter of
		// them at random under the race detector: the count is noise.
		t.Skip("allocations are not exact under the race detector")
	}
	healthz := func(mw gin.HandlerFunc) http.Handler {
		r := gin.New()
		r.Use(mw)
		r.GET("/healthz", func(c *gin.Context) { c.String(200, "ok") })
		return r
	}
	webtest.NoDBAllocations(t, healthz(func(c *gin.Context) { c.Next() }), func(m *uow.Manager, o nethttp.Options) http.Handler {
		return healthz(uowgin.TransactionWithOptions(m, o))
	})
}
