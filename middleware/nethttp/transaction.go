package nethttp

import (
	"net/http"
	"sync"
	"time"

	"github.com/uowkit/uowkit/internal/httpunit"
	"github.com/uowkit/uowkit/uow"
)

// ErrCommitFailed is returned by Hijack (on the writer the handler gets,
// or through http.ResponseController) when the unit could not be committed
// before handing the connection over; the client has been sent an error
// response instead.
var ErrCommitFailed = httpunit.ErrCommitFailed

// Options configures TransactionWithOptions, and the Echo adapter's
// uowecho.TransactionWithOptions: one set of options, validated the same way,
// for every adapter. The zero value of every field means its default.
type Options struct {
	// Commit reports whether a response with this status commits the unit.
	// A Hijack asks it about 101. Default: status < 400.
	Commit func(status int) bool
	// Skipper, when it returns true, serves the request without a unit:
	// its repositories then run in autocommit mode.
	Skipper func(r *http.Request) bool
	// UnitOptions returns the options of the request's unit, e.g.
	// ReadOnlySafeMethods; they are applied over the manager's defaults
	// (uow.WithDefaults). Their retry policy (uow.Retry, or the default one
	// of serializable units) is the one buffered mode re-runs the handler
	// with.
	UnitOptions func(r *http.Request) []uow.Option
	// Timeout, when positive, is a deadline on the request's context, which
	// the handler gets and the unit runs under (in buffered mode, each run
	// of the handler gets its own). If it passes before the decision, the
	// unit is rolled back at once, a running statement or a wait for a pool
	// connection is interrupted, and a status the commit policy accepts
	// becomes 504, while one it rejects (the handler's own 408, say) goes
	// through. The decision does not cancel the context: after a
	// WriteHeader, a flush or a hijack, the handler keeps it until it
	// returns or the deadline passes.
	Timeout time.Duration
	// ErrorHandler receives commit failures (a *uow.CommitError, or the
	// rollback-only or context error) and rollback errors, on the request's
	// goroutine, when the unit is decided; and, on the hooks' goroutine, a
	// panic that escaped them (package uow contains a hook's own panics and
	// errors, and reports them to the manager's Observer).
	// Default: logged with slog.Default, at Info level when the request
	// was cancelled (the client left), Warn when a deadline passed, and
	// Error otherwise, always for a partial or unknown commit.
	ErrorHandler func(r *http.Request, err error)
	// FailureResponse writes the body of the response that replaces the
	// handler's when the unit could not be committed: 500, 503 for a
	// retryable failure (Retry-After is already set), 504 when Timeout
	// passed first. Use it to answer in the application's error format,
	// writing to w (under Echo too: c.JSON and the like would write to the
	// handler's response, which is being replaced). The handler's headers
	// are gone, and the client gets status whatever the function writes: it
	// may set headers and write a body, nothing more. err is the unit's
	// error, for choosing a message, not for the client.
	// Default: the status text as plain text.
	FailureResponse func(w http.ResponseWriter, r *http.Request, status int, err error)
	// Buffer, when positive, buffers responses up to this many bytes so that
	// nothing reaches the client before the decision. When the request's
	// unit has a retry policy (see UnitOptions), a failure the policy
	// retries — a serialization failure or deadlock at any statement or at
	// COMMIT, a connection lost at BEGIN — re-runs the handler on a fresh
	// unit, exactly as uow's Do would re-run its function, as long as
	// nothing has reached the client; request bodies up to Buffer bytes are
	// then read before the handler runs, to be replayed, and a larger one is
	// streamed once and the request is not retried. A larger response, a
	// Flush or a Hijack falls back to streaming (decided at that moment).
	Buffer int
	// RetryAfter is sent, in whole seconds rounded up, with 503 responses to
	// retryable commit failures. Default: 1s.
	RetryAfter time.Duration
	// HookTimeout bounds the context of the after-commit and after-rollback
	// hooks of the request's units. They run after the response is
	// complete, on a goroutine of their own, with a context that carries the
	// request's values but not its cancellation. Default: 10s.
	HookTimeout time.Duration
	// HookGroup, when set, counts the goroutines that run hooks after
	// responses (Add before each starts, Done when it ends), so that a
	// server can wait for them at shutdown: call http.Server.Shutdown, then
	// HookGroup.Wait(), which HookTimeout bounds. Default: nil, not counted.
	HookGroup *sync.WaitGroup
	// Consistency, when true, gives read-your-writes across requests for
	// sources with replicas (uow.WithReplicas): the request's units run
	// under a uow.Consistency parsed from the request's X-Consistency-LSN
	// header (ConsistencyHeader; absent: empty), so that a read-only unit
	// reads a replica only once it has replayed what that header names; and
	// the response carries the header again, with the positions of what the
	// request's units committed added. A malformed header is answered 400,
	// and the handler does not run. Default: false, the header is ignored.
	Consistency bool
}

// ConsistencyHeader is the header that carries a uow.Consistency between
// requests (Options.Consistency): "source=LSN" pairs, for example
// "default=0/3000148".
const ConsistencyHeader = httpunit.ConsistencyHeader

// ReadOnlySafeMethods is a ready Options.UnitOptions: read-only units for
// GET, HEAD and OPTIONS requests.
func ReadOnlySafeMethods(r *http.Request) []uow.Option {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return readOnly[:1:1] // full: an append copies
	}
	return nil
}

// readOnly is shared by every safe request, which spares each an allocation.
var readOnly = []uow.Option{uow.ReadOnly()}

// Transaction returns middleware that gives every request a lazy unit of work
// from m, committed when the response status is below 400 and rolled back
// otherwise, decided before the status line leaves the process. It panics
// if m is nil.
func Transaction(m *uow.Manager) func(http.Handler) http.Handler {
	return TransactionWithOptions(m, Options{})
}

// TransactionWithOptions is Transaction with options. It panics, with a
// "nethttp:" prefix, if m is nil or an option is invalid: a negative Buffer,
// Timeout, RetryAfter or HookTimeout.
func TransactionWithOptions(m *uow.Manager, o Options) func(http.Handler) http.Handler {
	c := httpunit.New("nethttp", m, httpunit.Options(o))
	return func(next http.Handler) http.Handler {
		return &handler{c: c, next: next}
	}
}

type handler struct {
	c    *httpunit.Config
	next http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.c.Skip(r) {
		h.next.ServeHTTP(w, r)
		return
	}
	h.c.Serve(w, r, h.next, nil)
}
