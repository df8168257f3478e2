package uowecho_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowecho"
	"github.com/uowkit/uowkit/uow"
)

// TestNoDBRequestAllocations pins what a request that never touches the
// database costs in streaming mode, in allocations, which are exact. Echo
// builds its middleware chain for every request, which costs any middleware
// one allocation: the baseline is a middleware that does nothing. uow's
// Begin costs what it costs for a unit that is never used; the
// middleware's own are two: its state, which also holds the writer, the
// decision and the hook queue, and the request carrying the unit's context.
// Not parallel: AllocsPerRun counts every allocation of the process.
func TestNoDBRequestAllocations(t *testing.T) {
	healthz := func(mw echo.MiddlewareFunc) http.Handler {
		e := echo.New()
		e.Logger.SetOutput(io.Discard)
		e.Use(mw)
		e.GET("/healthz", func(c echo.Context) error { return c.String(200, "ok") })
		return e
	}
	noop := healthz(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { return next(c) }
	})
	webtest.NoDBAllocations(t, noop, func(m *uow.Manager, o nethttp.Options) http.Handler {
		return healthz(uowecho.TransactionWithOptions(m, o))
	})
}
