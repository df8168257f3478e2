package uowgin

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/uowkit/uowkit/internal/httpunit"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/uow"
)

// Transaction returns middleware that gives every request a lazy unit of work
// from m, committed when the status the handlers send is below 400 and
// rolled back otherwise, decided before the status line leaves the process.
// It panics, with a "uowgin:" prefix, if m is nil.
func Transaction(m *uow.Manager) gin.HandlerFunc {
	return TransactionWithOptions(m, nethttp.Options{})
}

// TransactionWithOptions is Transaction with the options of the net/http
// middleware, which mean the same here: the hooks that take an
// *http.Request get c.Request. It panics, with a "uowgin:" prefix, if m is
// nil or an option is invalid: a negative Buffer, Timeout, RetryAfter or
// HookTimeout.
func TransactionWithOptions(m *uow.Manager, o nethttp.Options) gin.HandlerFunc {
	unit := httpunit.New("uowgin", m, httpunit.Options(o))
	if o.Buffer > 0 && !rewindable {
		panic("uowgin: Options.Buffer needs gin.Context's handler index, which this version of gin does not have")
	}
	return func(c *gin.Context) {
		if unit.Skip(c.Request) {
			c.Next()
			return
		}
		serve(unit, c)
	}
}

// serve runs the handlers after the middleware in a unit, with c.Writer
// replaced by the decide-once writer, and puts gin's writer back when they
// are done (or panic), with the status and size that reached the client.
func serve(unit *httpunit.Config, c *gin.Context) {
	q := &request{c: c, orig: c.Writer, index: handlerIndex(c), errors: len(c.Errors), status: c.Writer.Status()}
	defer func() { c.Writer = q.orig }()
	if c.Request.Pattern == "" {
		c.Request.Pattern = c.FullPath() // the route, for the units' log lines
	}
	unit.ServeIn(&q.stream, q.real(), c.Request, q, q)
}

// request is one request's state, in one allocation: the shared
// middleware's, gin's writer and the writer that replaces it, and the
// Watcher that tells that writer what reached the client.
type request struct {
	stream httpunit.Stream // the middleware's state

	c      *gin.Context
	orig   gin.ResponseWriter // c.Writer as the middleware found it
	out    hijackOut          // what the middleware writes the response to: orig
	writer writer             // c.Writer while the handlers run
	index  int8               // c's handler index: the middleware's own position
	errors int                // len(c.Errors) before the handlers
	status int                // orig's status before the handlers: 404 in gin's NoRoute chain
	runs   int                // handler runs so far: more than one in buffered mode with retry

	sent       bool // a final status has reached the client
	sentStatus int
}

// real returns the writer the middleware writes the decided response to.
// It can hijack only if a writer under gin's can (not under HTTP/2): then
// a Hijack that cannot be done reports http.ErrNotSupported without
// deciding, as it does under net/http.
func (q *request) real() http.ResponseWriter {
	q.out.w, q.out.below = q.orig, q.orig
	u, ok := q.orig.(interface{ Unwrap() http.ResponseWriter })
	if !ok {
		return &q.out // gin's own writer always says it can hijack
	}
	q.out.below, q.out.unwrapped = u.Unwrap(), true
	if !hijackable(q.out.below) {
		return &q.out.out
	}
	return &q.out
}

// ServeHTTP runs the handlers after the middleware once, on the
// middleware's writer (under the gin.ResponseWriter they see as c.Writer)
// and the request carrying the unit, then does what gin does when they
// return without writing, while the unit is alive.
func (q *request) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := q.c
	if q.runs > 0 {
		// Buffered mode re-runs the handlers on a fresh unit: from the
		// middleware's position, without the errors of the failed run.
		rewind(c, q.index)
		c.Errors = c.Errors[:q.errors]
	}
	q.runs++
	q.writer = writer{q: q, w: w, status: q.status, size: noWritten}
	c.Writer, c.Request = &q.writer, r
	c.Next()
	q.finish(len(c.Errors) > q.errors)
}

// finish answers for handlers that returned without writing, as gin would
// after them: with the status they set (or gin's, 404 in the NoRoute
// chain), or 500 if they set none and recorded errors with c.Error. A
// status that commits goes out now, after the commit, so that nothing
// further out can change it. One that rolls back is left to gin: the unit
// is rolled back now, and the status is set on gin's writer without being
// sent, so that gin writes its 404 page, a middleware further out can
// render the recorded errors, or gin sends the status by itself. An invalid
// status is not left: it panics in the middleware, as net/http would,
// where gin.Recovery can still answer.
func (q *request) finish(failed bool) {
	w := &q.writer
	if w.Written() {
		return
	}
	if failed && !w.set {
		w.status = http.StatusInternalServerError
	}
	if w.status >= 100 && w.status <= 999 && httpunit.Leave(w.w, w.status) {
		q.orig.WriteHeader(w.status)
		return
	}
	w.WriteHeaderNow()
}

// Sent records the final status that reached the client, on every path: the
// handler's, 101 for a hijack, or the error status that replaced the
// handler's after a failed commit. c.Writer.Status() reports it from then
// on, and gin's writer, which the middleware writes to, holds it too.
func (q *request) Sent(status int) {
	q.sent, q.sentStatus = true, status
}

// Held is called when a buffered response fixes its status; c.Writer
// already reports it.
func (q *request) Held(int) {}
