package httpunit

import (
	"context"
	"errors"
	"net/http"

	"github.com/uowkit/uowkit/uow"
)

// Policy says which statuses commit. The zero value commits below 400.
type Policy struct {
	// Commit reports whether a response with this status commits the unit.
	// Nil means status < 400.
	Commit func(status int) bool
	// Retryable reports whether a failed commit is worth retrying by the
	// client (503 with Retry-After instead of 500). Nil means never.
	Retryable func(err error) bool
	// RetryAfter is the Retry-After value sent with 503, in seconds as text.
	// Empty means "1".
	RetryAfter string
	// Failure writes the body of the response that replaces the handler's
	// (see [Policy.WriteFailure]). Nil means the status text as plain text.
	Failure func(w http.ResponseWriter, r *http.Request, status int, err error)
}

// Outcome is what the middleware must do with the response.
type Outcome struct {
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

// Decide finishes u for a response with status: commit when the policy says
// so and the handler did not ask for a rollback, roll back otherwise.
func (p Policy) Decide(u *uow.Unit, status int) Outcome {
	if !p.commits(status) {
		return Outcome{Status: status, Err: u.Rollback()}
	}
	err := u.Commit()
	switch {
	case err == nil:
		return Outcome{Status: status}
	case errors.Is(err, uow.ErrRollbackRequested):
		// The handler asked for the rollback: its response goes through.
		return Outcome{Status: status}
	case errors.Is(err, context.DeadlineExceeded):
		// The deadline passed before the commit: the unit was rolled back.
		return Outcome{Status: http.StatusGatewayTimeout, Replaced: true, Err: err}
	case p.Retryable != nil && p.Retryable(err):
		return Outcome{Status: http.StatusServiceUnavailable, Replaced: true, Err: err}
	}
	return Outcome{Status: http.StatusInternalServerError, Replaced: true, Err: err}
}

func (p Policy) commits(status int) bool {
	if p.Commit != nil {
		return p.Commit(status)
	}
	return status < 400
}

// WriteFailure writes the response that replaces a handler's after a failed
// commit: the handler's headers are dropped, 503 gets Retry-After, and the
// body is Failure's (default: the status text as plain text). Whatever
// Failure does, the client gets o.Status: a status it writes is replaced,
// and one it does not write is sent for it.
func (p Policy) WriteFailure(w http.ResponseWriter, r *http.Request, o Outcome) {
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	if o.Status == http.StatusServiceUnavailable {
		ra := p.RetryAfter
		if ra == "" {
			ra = "1"
		}
		h.Set("Retry-After", ra)
	}
	if p.Failure == nil {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(o.Status)
		_, _ = w.Write([]byte(http.StatusText(o.Status) + "\n"))
		return
	}
	fw := &failureWriter{ResponseWriter: w, status: o.Status}
	p.Failure(fw, r, o.Status, o.Err)
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
