// Package uowgin is Gin middleware that gives every request a lazy unit of
// work and decides its fate from the status the handlers send, before the
// status line leaves the process. It is the Gin adapter of
// [github.com/uowkit/uowkit/middleware/nethttp], in a module of its own
// (github.com/uowkit/uowkit/middleware/uowgin), so that only the
// applications that use Gin depend on Gin.
//
// # Setting up
//
//	r := gin.New()
//	r.Use(gin.Logger(), gin.Recovery()) // outside: they see what the client saw
//	r.Use(uowgin.Transaction(m))
//
//	// or with options, the net/http middleware's:
//	r.Use(uowgin.TransactionWithOptions(m, nethttp.Options{
//		UnitOptions: nethttp.ReadOnlySafeMethods,
//		Buffer:      1 << 20,
//	}))
//
// [TransactionWithOptions] takes [nethttp.Options], which mean here what they
// mean for net/http: the hooks that take an *http.Request (Skipper,
// UnitOptions, ErrorHandler, FailureResponse) get c.Request. The same
// validation applies, and misconfiguration panics with a "uowgin:" prefix
// when the middleware is built, never at request time.
// [nethttp.ReadOnlySafeMethods] and [nethttp.ErrCommitFailed] serve Gin
// applications too. FailureResponse writes the application's own error
// format to the http.ResponseWriter it is given (not through c.JSON, which
// would write to the handler's response, the one being replaced).
//
// # The decision
//
// Handlers and the repositories they call find the request's unit in
// c.Request.Context() ([github.com/uowkit/uowkit/repo.From]); see
// "Gin's context" below for c itself. The unit is lazy: a request that never
// touches the database makes no round trip. The middleware replaces c.Writer,
// for the handlers after it, with a gin.ResponseWriter of its own that keeps
// Gin's rules: c.Status and c.Writer.WriteHeader only record the status,
// which goes out with the header at c.Writer.WriteHeaderNow, the first
// Write or WriteString, a Flush, or when the handlers return. That moment is
// the decision: below 400 (or Options.Commit) commits, anything else rolls
// back, and only then does the status go out. So every write path decides
// on the status the client gets: c.JSON, c.String, c.Data, c.Render and
// the other renderers, c.Redirect, c.Status with no body, c.AbortWithStatus,
// c.AbortWithStatusJSON, c.AbortWithError, c.Stream and c.SSEvent (decided
// at the first chunk), writes straight to c.Writer, a Flush (also through
// [net/http.ResponseController]), and a Hijack (decided as a 101).
//
// A failed commit replaces the handler's response with 500 (503 with
// Retry-After for a serialization failure or deadlock when nothing
// committed, 504 when Options.Timeout passed first; always 500 for a
// partial commit across several databases) and discards its body: a client
// never gets a 2xx for work that did not commit. The error goes to
// Options.ErrorHandler.
//
// Informational statuses (1xx other than 101) go out at once, undecided. A
// Hijack where the connection cannot be hijacked (HTTP/2) reports
// [net/http.ErrNotSupported] without deciding, where Gin's own writer
// would panic.
//
// # Handlers that write nothing
//
// When the handlers return without writing, Gin would send the status they
// set (200 if none). The middleware decides on that status, with one
// addition: handlers that recorded errors with c.Error and set no status
// are decided as 500. A status that commits is sent at once, after the
// commit, so nothing further out can change it. A status that rolls back
// is left to Gin, once the unit is rolled back: it is set on Gin's writer
// without being sent, so that Gin still writes its own "404 page not found"
// and "405 method not allowed" pages, a middleware further out that renders
// c.Errors writes its response (with any status: nothing committed), and
// otherwise Gin sends the status with an empty body. The after-rollback
// hooks of such a request may start before Gin has written it.
//
// A middleware that renders c.Errors is best registered after (inside)
// this one, where the status it writes decides; further out, it can only
// render what rolled back.
//
// # Gin's view of the status
//
// The middleware writes the decided response through the gin.ResponseWriter
// it found in c.Writer, and puts that writer back when the handlers return
// or panic. So c.Writer.Status() and c.Writer.Size(), as gin.Logger and
// metrics middleware further out read them, are those of the response that
// reached the client: 500 when a failed commit replaced the handler's 201,
// 101 after a hijack. Inside, c.Writer.Status() reports the status that
// went out once one has, and the status to be sent until then; in buffered
// mode, and for handlers that write nothing, the decision comes after the
// middleware inside have returned, so they see the handler's status.
//
// # Gin's context
//
// A *gin.Context is a context.Context, but it reaches the request's
// context (and the unit in it) only when the engine's ContextWithFallback
// is set:
//
//	r := gin.New()
//	r.ContextWithFallback = true
//	r.POST("/teams", func(c *gin.Context) {
//		repo.From(c, db).ExecContext(c, ...) // in the request's unit
//	})
//
// Without it, c carries neither the unit nor the request's deadline and
// cancellation, and a repository given c runs outside the unit, in
// autocommit mode. Pass c.Request.Context() there, or open the pool on
// [github.com/uowkit/uowkit/uow.Guard] to refuse such statements.
//
// # Panics, timeouts, lost clients
//
// A panic rolls back and goes on to gin.Recovery, which answers 500 through
// Gin's writer. A streamed response that went out before the panic was
// committed then, and stays so; a buffered one is dropped. Options.Timeout
// is a deadline on the request's context: if it passes before the decision,
// the unit is rolled back (a wait for a pool connection included) and a
// status that would commit becomes 504; the decision does not cancel the
// context, so a handler that streams after a Flush or serves a WebSocket
// keeps it. A client that goes away rolls the unit back at once. After the
// decision, repository calls fail with
// [github.com/uowkit/uowkit/uow.ErrDone]; they never autocommit.
// [github.com/uowkit/uowkit/uow.SetRollbackOnly] rolls back even a 2xx,
// which then goes through.
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
// or a serializable unit), a failure the policy retries re-runs every
// handler after the middleware on a fresh unit, replaying the request
// body, while nothing has reached the client: the same policy, and the same
// classification, as uow's Do. Middleware before this one runs once. Each
// run starts with a fresh response and without the errors the failed run
// recorded in c.Errors; values a run set with c.Set stay. Gin has no API
// to run the rest of a chain again, so the middleware puts gin.Context's
// handler index back to its own position before each re-run; it finds
// that field when the package loads, and refuses Options.Buffer (panics)
// with a version of Gin that does not have it.
//
// Do not run the net/http middleware around c.Next(): the handlers would
// go on writing to Gin's writer, so a 409 or an AbortWithStatusJSON(422)
// would commit, and a failed COMMIT would reach the client as the
// handler's 201 with "Internal Server Error" appended. Wrapping the whole
// engine in it decides right, but gin.Logger then logs the handler's 201
// while the client got 500.
package uowgin
