package httpunit

import (
	"context"
	"errors"
	"net/http"

	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// ErrCommitFailed is returned by Hijack when the unit could not be committed
// before handing the connection over; the client has been sent an error
// response instead. Package nethttp exports it.
var ErrCommitFailed = errors.New("uow middleware: commit failed; connection not hijacked")

// outcome is what the middleware must do with the response.
type outcome struct {
	// Status is the status to send: the handler's, or 500 when the commit
	// failed, 503 when it failed retryably and nothing committed, 504 when
	// the deadline passed before the commit.
	Status int
	// Replaced is true when the handler's status and body must not reach the
	// client: the commit failed and Status is an error status.
	Replaced bool
	// Err is the commit's error, or a rollback's error worth reporting.
	Err error
}

// decide finishes u for a response with status: commit when the commit
// policy says so and the handler did not ask for a rollback, roll back
// otherwise. A failed commit is answered 503 when retryable (nil:
// retry.Retryable) accepts its error, which it never does for a partial or
// unknown commit.
func (c *Config) decide(u *uow.Unit, status int, retryable func(error) bool) outcome {
	if !c.commits(status) {
		return outcome{Status: status, Err: u.Rollback()}
	}
	err := u.Commit()
	if retryable == nil {
		retryable = retry.Retryable
	}
	switch {
	case err == nil:
		return outcome{Status: status}
	case errors.Is(err, uow.ErrRollbackRequested):
		// The handler asked for the rollback: its response goes through.
		return outcome{Status: status}
	case errors.Is(err, context.DeadlineExceeded):
		// The deadline passed before the commit: the unit was rolled back.
		return outcome{Status: http.StatusGatewayTimeout, Replaced: true, Err: err}
	case retryable(err):
		return outcome{Status: http.StatusServiceUnavailable, Replaced: true, Err: err}
	}
	return outcome{Status: http.StatusInternalServerError, Replaced: true, Err: err}
}

// writeFailure writes the response that replaces a handler's after a
// failed commit: the handler's headers are dropped, 503 gets Retry-After,
// and the body is FailureResponse's (default: the status text as plain
// text). Whatever FailureResponse does, the client gets o.Status: a status it
// writes is replaced, and one it does not write is sent for it.
func (c *Config) writeFailure(w http.ResponseWriter, r *http.Request, o outcome) {
	h := w.Header()
	clear(h)
	h.Set("X-Content-Type-Options", "nosniff")
	if o.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", c.retryAfter)
	}
	if c.o.FailureResponse == nil {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(o.Status)
		_, _ = w.Write([]byte(http.StatusText(o.Status) + "\n"))
		return
	}
	fw := &failureWriter{ResponseWriter: w, status: o.Status}
	c.o.FailureResponse(fw, r, o.Status, o.Err)
	fw.WriteHeader(o.Status)
}

// failureWriter pins the status of a failure response.
type failureWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

// WriteHeader sends the pinned status, once, whatever code is asked for.
func (f *failureWriter) WriteHeader(int) {
	if !f.wrote {
		f.wrote = true
		f.ResponseWriter.WriteHeader(f.status)
	}
}

// Write sends the pinned status first if needed.
func (f *failureWriter) Write(b []byte) (int, error) {
	f.WriteHeader(f.status)
	return f.ResponseWriter.Write(b)
}
