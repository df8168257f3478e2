package uowecho

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/uowkit/uowkit/internal/httpunit"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/uow"
)

// Transaction returns middleware that gives every request a lazy unit of work
// from m, committed when the status Echo writes is below 400 and rolled back
// otherwise, decided before the status line leaves the process. It panics,
// with a "uowecho:" prefix, if m is nil.
func Transaction(m *uow.Manager) echo.MiddlewareFunc {
	return TransactionWithOptions(m, nethttp.Options{})
}

// TransactionWithOptions is Transaction with the options of the net/http
// middleware, which mean the same here: the hooks that take an
// *http.Request get c.Request(). It panics, with a "uowecho:" prefix, if m
// is nil or an option is invalid: a negative Buffer, Timeout, RetryAfter or
// HookTimeout.
func TransactionWithOptions(m *uow.Manager, o nethttp.Options) echo.MiddlewareFunc {
	unit := httpunit.New("uowecho", m, httpunit.Options(o))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if unit.Skip(c.Request()) {
				return next(c)
			}
			return serve(unit, c, next)
		}
	}
}

// serve runs next in a unit. The decide-once writer goes under Echo's
// Response, as c.Response().Writer, so that it sees the status Echo really
// writes (after Before hooks), a Flush before any WriteHeader (which
// bypasses Before hooks), a Hijack, and writes made straight to
// c.Response().Writer.
//
// The handler's error is returned, as Echo's own body-dump and request-logger
// middleware do, after c.Error has written its response: middleware further
// out still sees it, and Echo's HTTPErrorHandler ignores it because the
// response is committed.
func serve(unit *httpunit.Config, c echo.Context, next echo.HandlerFunc) error {
	res := c.Response()
	q := &request{c: c, next: next, res: res, status: res.Status, size: res.Size, committed: res.Committed}
	orig := res.Writer
	returned := false
	defer func() {
		res.Writer = orig
		if !returned && !q.sent {
			// A panic, and nothing reached the client (a buffered response
			// is dropped): the recoverer further out must still answer.
			q.reset()
		}
	}()
	if req := c.Request(); req.Pattern == "" {
		req.Pattern = c.Path() // the route, for the units' log lines
	}
	unit.ServeIn(&q.stream, orig, c.Request(), q, q)
	returned = true
	return q.err
}

// request is one request's state: the handler the unit's middleware runs
// (once, or once per attempt in buffered mode), and the Watcher that keeps
// Echo's Response true to what the client saw.
type request struct {
	stream httpunit.Stream // the middleware's state, in the same allocation

	c    echo.Context
	next echo.HandlerFunc
	res  *echo.Response
	err  error // the handler's
	sent bool  // a final status has reached the client

	// The Response as it was before the handler.
	status    int
	size      int64
	committed bool
}

func (q *request) reset() {
	q.res.Status, q.res.Size, q.res.Committed = q.status, q.size, q.committed
}

// ServeHTTP runs the handler once, on the middleware's writer and the
// request carrying the unit.
func (q *request) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Each attempt starts from the response as it was.
	q.res.Writer = w
	q.reset()
	q.c.SetRequest(r)
	if q.err = q.next(q.c); q.err != nil {
		// Echo would write the error response only after the chain
		// returns; write it now, while the unit is alive, so that its
		// status decides.
		q.c.Error(q.err)
	}
}

// Sent reports into Echo's Response the final status that really reached
// the client, on every path: an explicit WriteHeader, net/http's implicit
// 200 at the first Write, ReadFrom or Flush, or a hijack (101). When the
// commit fails, the middleware answers 500 (503, 504) under a handler that
// wrote 201: loggers and metrics further out read Response.Status and must
// see what the client saw. And a status that went out by a path that
// bypassed Response (c.Response().Writer, a Flush first) marks the Response
// committed, so that Echo does not glue an error response after it.
func (q *request) Sent(status int) {
	q.sent = true
	q.res.Status, q.res.Committed = status, true
}

// Held marks the Response committed when a buffered handler fixes its
// status by a path that bypasses Response (a WriteHeader, Write or ReadFrom
// on c.Response().Writer), as streaming would, although nothing has gone
// out yet: so Echo does not append an error response to the held one.
// Response.Status is then the handler's status until Sent reports the one
// that went out.
func (q *request) Held(status int) {
	if !q.res.Committed {
		q.res.Status, q.res.Committed = status, true
	}
}
