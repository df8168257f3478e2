// Package uowecho is Echo middleware that gives every request a lazy unit of
// work and decides its fate from the status Echo writes, before the status
// line leaves the process. It is the Echo adapter of
// [github.com/uowkit/uowkit/middleware/nethttp], in a module of its own
// (github.com/uowkit/uowkit/middleware/uowecho), so that only the
// applications that use Echo depend on it.
//
// # Setting up
//
//	e := echo.New()
//	e.Use(middleware.Recover()) // outside: sees a panic after the rollback
//	e.Use(uowecho.Transaction(m))
//
//	// or with options, the net/http middleware's:
//	e.Use(uowecho.TransactionWithOptions(m, nethttp.Options{
//		UnitOptions: nethttp.ReadOnlySafeMethods,
//		Buffer:      1 << 20,
//	}))
//
// [TransactionWithOptions] takes [nethttp.Options], which mean here what they
// mean for net/http: the hooks that take an *http.Request (Skipper,
// UnitOptions, ErrorHandler, FailureResponse) get c.Request(). The same
// validation applies, and misconfiguration panics with a "uowecho:" prefix
// when the middleware is built, never at request time.
// [nethttp.ReadOnlySafeMethods] and [nethttp.ErrCommitFailed] serve Echo
// applications too.
//
// # The decision
//
// Handlers and the repositories they call find the request's unit in
// c.Request().Context() ([github.com/uowkit/uowkit/repo.From]). The unit is
// lazy: a request that never touches the database makes no round trip. When
// the status becomes known the middleware decides once: below 400 (or
// Options.Commit) commits, otherwise everything is rolled back and the
// handler's response goes through unchanged. A failed commit replaces the
// handler's response with 500 (503 with Retry-After for a serialization
// failure or deadlock when nothing committed, 504 when Options.Timeout
// passed first; always 500 for a partial commit across several databases)
// and discards its body: a client never gets a 2xx for work that did not
// commit. The error goes to Options.ErrorHandler.
//
// Echo writes an error response from its HTTPErrorHandler only after the
// middleware chain returns, so the middleware calls c.Error(err) itself for
// an error returned by the handler: the status that handler writes (an
// echo.HTTPError's code, 500 for a plain error) is the one that decides. The
// error is then returned, as Echo's body-dump and request-logger middleware
// do, so that middleware further out still sees it; Echo ignores it because
// the response is committed.
//
// The decide-once writer is installed as c.Response().Writer, under Echo's
// Response, so it sees the status after Response.Before hooks have run, a
// Flush before any WriteHeader (which bypasses Before hooks, and is decided
// as the 200 it sends), a Hijack (WebSocket), an io.Copy into the writer
// (ReadFrom), and writes made straight to c.Response().Writer. It offers
// http.Flusher, http.Hijacker, io.ReaderFrom and Unwrap, in both modes.
//
// Response.Status and Response.Committed follow what reaches the client, on
// every path: the first final status that goes out — an explicit
// WriteHeader, the implicit 200 of a Write, ReadFrom or Flush straight to
// the writer, 101 for a Hijack — is written into Response.Status and marks
// the Response committed. So loggers and metrics further out see 500 when
// a failed commit replaced the handler's 201, and Echo does not glue an
// error response after a response that already went out. In buffered mode,
// a status the handler fixes on c.Response().Writer marks the Response
// committed at once, although it is still held back.
//
// Options.Timeout is a deadline on the request's context: if it passes
// before the decision, the unit is rolled back (a wait for a pool connection
// included) and a status that would commit becomes 504 (one the policy
// rejects goes through); the decision does not cancel the context, so a
// handler that streams after a Flush or serves a WebSocket keeps it until
// it returns or the deadline passes.
//
// A panic rolls back and goes on to middleware.Recover. After the decision,
// repository calls fail with [github.com/uowkit/uowkit/uow.ErrDone]; they
// never autocommit. [github.com/uowkit/uowkit/uow.SetRollbackOnly] rolls back
// even a 2xx, which then goes through. A client that goes away rolls the
// unit back at once.
//
// # Hooks
//
// After-commit and after-rollback hooks of the request's units run once the
// response is complete, on a goroutine of their own, with a context that
// carries the request's values and ends after Options.HookTimeout (10s by
// default): a slow hook never holds the response back.
//
// # Buffered mode and retries
//
// Options.Buffer holds the response back until the unit is finished. When
// the request's unit has a retry policy (uow.Retry among the unit options,
// or a serializable unit), a failure the policy retries re-runs the handler
// on a fresh unit, replaying the request body, while nothing has reached the
// client: the same policy, and the same classification, as uow's Do. As
// without the buffer, the headers sent are those set when the status was
// set; later changes count only for trailers. Each run starts with a fresh
// Response status; headers set by a failed run are dropped. Echo gives no
// way to remove Response.Before and After hooks, so hooks a handler
// registers run once for every run so far: register them outside retried
// handlers, or make them idempotent.
//
// Do not adapt the net/http middleware with echo.WrapMiddleware: the handler's
// error would reach Echo's error handler only after the unit was decided as
// a 200.
package uowecho
