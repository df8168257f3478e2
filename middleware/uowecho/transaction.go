package echo

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/uowkit/uowkit/internal/httpunit"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// ErrCommitFailed is returned by c.Response().Hijack() when the unit could
// not be committed before handing the connection over; the client has been
// sent an error response instead.
var ErrCommitFailed = httpunit.ErrCommitFailed

// Config configures MiddlewareWithConfig. Zero fields mean their defaults.
type Config struct {
	// Skipper, when it returns true, serves the request without a unit.
	// Default: middleware.DefaultSkipper (never skips).
	Skipper middleware.Skipper
	// Manager begins the units. Required.
	Manager *uow.Manager
	// Commit reports whether a response with this status commits the unit.
	// Default: status < 400.
	Commit func(status int) bool
	// UnitOptions returns the options of the request's unit, e.g.
	// ReadOnlySafeMethods. It runs before the handler.
	UnitOptions func(c echo.Context) []uow.Option
	// Timeout, when positive, is a deadline on the request's context, which
	// the handler gets and the unit runs under (in buffered mode, each run
	// of the handler gets its own). If it passes before the decision, the
	// unit is rolled back at once, a running statement is interrupted, and
	// a status the commit policy accepts becomes 504, while one it rejects
	// (the handler's own 408, say) goes through. The decision does not
	// cancel the context: after a WriteHeader, a Flush or a Hijack, the
	// handler keeps it until it returns or the deadline passes.
	// Default: none.
	Timeout time.Duration
	// ErrorHandler receives commit failures (a *uow.CommitError, or the
	// context's error) and rollback errors. The client has already been
	// answered. Default: logged with slog.Default, at Info level when the
	// request was cancelled (the client left), Warn when a deadline
	// passed, and Error otherwise, always for a partial or unknown commit.
	ErrorHandler func(c echo.Context, err error)
	// FailureResponse writes the body of the response that replaces the
	// handler's when the unit could not be committed: 500, 503 for a
	// retryable failure (Retry-After is already set), 504 when Timeout
	// passed first. Use it to answer in the application's error format. Write
	// to w (for example with json.NewEncoder(w)): Echo is in the middle of
	// writing the handler's response, so c.JSON and the like write nothing
	// here; c is for reading the request's values. The handler's headers
	// are gone, and the client gets status whatever the function writes.
	// err is the unit's error, for choosing a message, not for the client.
	// Default: the status text as plain text.
	FailureResponse func(c echo.Context, w http.ResponseWriter, status int, err error)
	// Buffer, when positive, buffers responses up to this many bytes so that
	// nothing reaches the client before the unit is finished. A larger
	// response, a Flush or a Hijack falls back to streaming. Default: 0,
	// streaming.
	Buffer int
	// Retry, in buffered mode, re-runs the handler on a fresh unit when its
	// unit failed with an error the policy retries (a serialization failure
	// or deadlock, at any statement or at COMMIT), replaying request bodies
	// of up to Buffer bytes, as long as nothing has reached the client.
	// Default: nil, no retry. Retry without Buffer panics.
	Retry *retry.Policy
	// RetryAfter is sent with 503 responses to retryable commit failures,
	// rounded up to whole seconds. Default: 1s.
	RetryAfter time.Duration
}

// DefaultConfig is the default configuration, without a Manager.
var DefaultConfig = Config{Skipper: middleware.DefaultSkipper}

// ReadOnlySafeMethods is a ready Config.UnitOptions: read-only units for GET,
// HEAD and OPTIONS requests, read-write ones otherwise.
func ReadOnlySafeMethods(c echo.Context) []uow.Option {
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return []uow.Option{uow.ReadOnly()}
	}
	return nil
}

// Middleware returns middleware that gives every request a lazy unit of work
// from m, committed when the status Echo writes is below 400 and rolled back
// otherwise, decided before the status line leaves the process. It panics if
// m is nil.
func Middleware(m *uow.Manager) echo.MiddlewareFunc {
	c := DefaultConfig
	c.Manager = m
	return MiddlewareWithConfig(c)
}

// MiddlewareWithConfig is Middleware with a configuration. It panics, with a
// "uowecho:" prefix, on a nil Manager, a negative Buffer, Timeout or
// RetryAfter, or Retry without Buffer.
func MiddlewareWithConfig(cfg Config) echo.MiddlewareFunc {
	if err := cfg.check(); err != "" {
		panic("uowecho: " + err)
	}
	if cfg.Skipper == nil {
		cfg.Skipper = DefaultConfig.Skipper
	}
	s := httpunit.Settings{
		Commit: cfg.Commit, Timeout: cfg.Timeout, Buffer: cfg.Buffer,
		Retry: cfg.Retry, RetryAfter: cfg.RetryAfter,
	}
	if cfg.UnitOptions != nil {
		s.UnitOptions = func(r *http.Request) []uow.Option { return cfg.UnitOptions(echoContext(r)) }
	}
	if cfg.ErrorHandler != nil {
		s.Report = func(r *http.Request, err error) { cfg.ErrorHandler(echoContext(r), err) }
	}
	if cfg.FailureResponse != nil {
		s.Failure = func(w http.ResponseWriter, r *http.Request, status int, err error) {
			cfg.FailureResponse(echoContext(r), w, status, err)
		}
	}
	withContext := cfg.UnitOptions != nil || cfg.ErrorHandler != nil || cfg.FailureResponse != nil
	unit := httpunit.NewConfig(cfg.Manager, s)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if cfg.Skipper(c) {
				return next(c)
			}
			r := c.Request()
			if withContext {
				r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, c))
			}
			return serve(unit, c, r, next)
		}
	}
}

func (cfg *Config) check() string {
	switch {
	case cfg.Manager == nil:
		return "Config.Manager is nil"
	case cfg.Buffer < 0:
		return "negative Config.Buffer"
	case cfg.Timeout < 0:
		return "negative Config.Timeout"
	case cfg.RetryAfter < 0:
		return "negative Config.RetryAfter"
	case cfg.Retry != nil && cfg.Buffer == 0:
		return "Config.Retry needs Config.Buffer: a streamed response cannot be taken back"
	}
	return ""
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
func serve(unit *httpunit.Config, c echo.Context, r *http.Request, next echo.HandlerFunc) error {
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
	unit.Serve(orig, r, q.run, q)
	returned = true
	return q.err
}

// request is one request's state.
type request struct {
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

// run runs the handler once (buffered mode may run it again).
func (q *request) run(w http.ResponseWriter, r *http.Request) {
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

type ctxKey struct{}

func (ctxKey) String() string { return "uowecho.context" }

// echoContext returns the echo.Context of a request served by the
// middleware, for the Config hooks that take one.
func echoContext(r *http.Request) echo.Context {
	c, _ := r.Context().Value(ctxKey{}).(echo.Context)
	return c
}
