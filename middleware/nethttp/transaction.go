package nethttp

import (
	"net/http"
	"time"

	"github.com/uowkit/uowkit/internal/httpunit"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// ErrCommitFailed is returned by Hijack when the unit could not be committed
// before handing the connection over; the client has been sent an error
// response instead.
var ErrCommitFailed = httpunit.ErrCommitFailed

// Options configures TransactionWithOptions. The zero value of every field
// means its default.
type Options struct {
	// Commit reports whether a response with this status commits the unit.
	// A Hijack asks it about 101. Default: status < 400.
	Commit func(status int) bool
	// Skipper, when it returns true, serves the request without a unit:
	// its repositories then run in autocommit mode.
	Skipper func(r *http.Request) bool
	// UnitOptions returns the options of the request's unit, e.g.
	// ReadOnlySafeMethods.
	UnitOptions func(r *http.Request) []uow.Option
	// Timeout, when positive, is a deadline on the request's context, which
	// the handler gets and the unit runs under (in buffered mode, each run
	// of the handler gets its own). If it passes before the decision, the
	// unit is rolled back at once, a running statement is interrupted, and
	// a status the commit policy accepts becomes 504, while one it rejects
	// (the handler's own 408, say) goes through. The decision does not
	// cancel the context: after a WriteHeader, a flush or a hijack, the
	// handler keeps it until it returns or the deadline passes.
	Timeout time.Duration
	// ErrorHandler receives commit failures (a *uow.CommitError, or the
	// rollback-only or context error) and rollback errors, on the request's
	// goroutine, when the unit is decided.
	// Default: logged with slog.Default, at Info level when the request
	// was cancelled (the client left), Warn when a deadline passed, and
	// Error otherwise, always for a partial or unknown commit.
	ErrorHandler func(r *http.Request, err error)
	// FailureResponse writes the body of the response that replaces the
	// handler's when the unit could not be committed: 500, 503 for a
	// retryable failure (Retry-After is already set), 504 when Timeout
	// passed first. Use it to answer in the application's error format. The
	// handler's headers are gone, and the client gets status whatever the
	// function writes: it may set headers and write a body, nothing more.
	// err is the unit's error, for choosing a message, not for the client.
	// Default: the status text as plain text.
	FailureResponse func(w http.ResponseWriter, r *http.Request, status int, err error)
	// Buffer, when positive, buffers responses up to this many bytes so that
	// nothing reaches the client before the decision, and lets Retry re-run
	// the handler. A larger response, a Flush or a Hijack falls back to
	// streaming (decided at that moment). With Retry, request bodies up to
	// this size are read before the handler runs, to be replayed; a larger
	// one is streamed once and the request is not retried.
	Buffer int
	// Retry, in buffered mode, re-runs the handler on a fresh unit when its
	// unit failed with an error the policy retries (a serialization failure
	// or deadlock at any statement or at COMMIT), as long as nothing has
	// reached the client. The policy's attempts, backoff, MaxElapsed and
	// OnRetry apply; if the request's context ends during a backoff, the
	// client gets 503 (504 for a deadline). Nil means no retry.
	Retry *retry.Policy
	// RetryAfter is sent, in whole seconds rounded up, with 503 responses to
	// retryable commit failures. Default: 1s.
	RetryAfter time.Duration
}

// ReadOnlySafeMethods is a ready UnitOptions: read-only units for GET, HEAD
// and OPTIONS requests.
func ReadOnlySafeMethods(r *http.Request) []uow.Option {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return []uow.Option{uow.ReadOnly()}
	}
	return nil
}

// Transaction returns middleware that gives every request a lazy unit of work
// from m, committed when the response status is below 400 and rolled back
// otherwise, decided before the status line leaves the process.
func Transaction(m *uow.Manager) func(http.Handler) http.Handler {
	return TransactionWithOptions(m, Options{})
}

// TransactionWithOptions is Transaction with options. It panics, with a
// "nethttp:" prefix, if m is nil or an option is invalid: a negative Buffer,
// Timeout or RetryAfter, or Retry without Buffer (a streamed response cannot
// be taken back to run the handler again).
func TransactionWithOptions(m *uow.Manager, o Options) func(http.Handler) http.Handler {
	if err := o.check(m); err != "" {
		panic("nethttp: " + err)
	}
	c := httpunit.NewConfig(m, httpunit.Settings{
		Commit: o.Commit, UnitOptions: o.UnitOptions, Timeout: o.Timeout, Buffer: o.Buffer,
		Retry: o.Retry, RetryAfter: o.RetryAfter, Report: o.ErrorHandler, Failure: o.FailureResponse,
	})
	return func(next http.Handler) http.Handler {
		return &handler{c: c, skipper: o.Skipper, next: next}
	}
}

// check returns what is wrong with m and o, or "".
func (o Options) check(m *uow.Manager) string {
	switch {
	case m == nil:
		return "nil *uow.Manager"
	case o.Buffer < 0:
		return "negative Options.Buffer"
	case o.Timeout < 0:
		return "negative Options.Timeout"
	case o.RetryAfter < 0:
		return "negative Options.RetryAfter"
	case o.Retry != nil && o.Buffer == 0:
		return "Options.Retry needs Options.Buffer: a streamed response cannot be taken back"
	}
	return ""
}

type handler struct {
	c       *httpunit.Config
	skipper func(r *http.Request) bool
	next    http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.skipper != nil && h.skipper(r) {
		h.next.ServeHTTP(w, r)
		return
	}
	h.c.Serve(w, r, h.next.ServeHTTP, nil)
}
