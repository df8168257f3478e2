package httpunit

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/felixge/httpsnoop"

	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// ErrCommitFailed is returned by Hijack when the unit could not be committed
// before handing the connection over; the client has been sent an error
// response instead.
var ErrCommitFailed = errors.New("uow middleware: commit failed; connection not hijacked")

// Config is what a middleware needs to serve one request in a unit.
type Config struct {
	Policy
	// Manager begins the units.
	Manager *uow.Manager
	// UnitOptions returns the options of a request's unit.
	UnitOptions func(r *http.Request) []uow.Option
	// Timeout bounds each request, or each run of the handler in buffered
	// mode, through its context (0: none); see deadline.
	Timeout time.Duration
	// Report receives commit failures and rollback errors.
	Report func(r *http.Request, err error)
	// Buffer enables buffered mode (bytes; 0: streaming).
	Buffer int
	// Retry re-runs the handler in buffered mode (nil: never).
	Retry *retry.Policy
}

func (c *Config) options(r *http.Request) []uow.Option {
	if c.UnitOptions != nil {
		return c.UnitOptions(r)
	}
	return nil
}

// deadline returns the context to run one handler in: r's, bounded by
// Timeout, and the function that releases it, to be called once the
// handler has returned and the unit has been decided.
//
// The deadline is the middleware's, not the unit's (uow.Timeout): a unit's
// own deadline ends with the unit, that is at the decision, which would
// cancel the context of a handler still streaming after a flush or serving
// a hijacked connection. The unit begun on this context still rolls back
// when the deadline passes, because a root unit ends with its context, and
// a later Commit then fails with an error wrapping
// context.DeadlineExceeded: the 504.
func (c *Config) deadline(r *http.Request) (context.Context, context.CancelFunc) {
	if c.Timeout <= 0 {
		return r.Context(), func() {}
	}
	return context.WithTimeout(r.Context(), c.Timeout)
}

func (c *Config) report(r *http.Request, err error) {
	if err != nil && c.Report != nil {
		c.Report(r, err)
	}
}

// Watcher is told what becomes of a response's status, for an adapter that
// keeps its framework's view of the response true to the client's (Echo's
// Response.Status and Committed).
type Watcher interface {
	// Held is called when the handler fixes the status of a buffered
	// response (WriteHeader, or the implicit 200 of a Write, ReadFrom or
	// Flush), before anything has gone out.
	Held(status int)
	// Sent is called once, with the first final status that goes to the
	// client: the handler's (the implicit 200 of a Write, ReadFrom or Flush
	// included; 101 for a hijack) or the error status that replaced it. It
	// is not called for a streaming handler that wrote nothing: net/http,
	// or a middleware further out, answers after the middleware.
	Sent(status int)
}

// Serve runs next for one request inside a lazy unit and decides the unit's
// fate once, when the response status becomes known. next receives the
// wrapped writer and the request carrying the unit. watch, if not nil, is
// told of the status.
func (c *Config) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request), watch Watcher) {
	if c.Buffer > 0 {
		c.serveBuffered(w, r, next, watch)
		return
	}
	ctx, cancel := c.deadline(r)
	defer cancel() // after finish: the unit is decided, not aborted
	ctx, u := c.Manager.Begin(ctx, c.options(r)...)
	d := &decision{c: c, u: u, r: r, w: w, watch: watch}
	defer d.finish() // rolls back on panic (which goes on) and decides a silent handler
	next(d.wrap(w), r.WithContext(ctx))
	d.returned = true
}

// decision finishes one unit once. A ResponseWriter is not used
// concurrently, so it needs no lock.
type decision struct {
	c        *Config
	u        *uow.Unit
	r        *http.Request
	w        http.ResponseWriter // the real writer
	watch    Watcher             // or nil
	done     bool
	replaced bool
	sent     bool // a final status has gone to w
	returned bool // the handler returned, rather than panicked or called runtime.Goexit
}

// out reports the first final status that goes to the real writer; net/http
// ignores any later one.
func (d *decision) out(status int) {
	if !d.sent {
		d.sent = true
		if d.watch != nil {
			d.watch.Sent(status)
		}
	}
}

// fail writes the response that replaces the handler's.
func (d *decision) fail(o Outcome) {
	d.c.WriteFailure(d.w, d.r, o)
	d.out(o.Status)
}

// decide finishes the unit for status, once, and reports whether the
// handler's response must be swallowed (the commit failed and an error
// response was written instead).
func (d *decision) decide(status int) bool {
	if d.done {
		return d.replaced
	}
	d.done = true
	o := d.c.Decide(d.u, status)
	d.c.report(d.r, o.Err)
	if o.Replaced {
		d.replaced = true
		d.fail(o)
	}
	return d.replaced
}

// finish runs when the handler returns, panics or exits its goroutine.
func (d *decision) finish() {
	if !d.returned {
		// A panic, which goes on unwinding to the application's recoverer,
		// or runtime.Goexit (t.FailNow in a handler): the handler did not
		// finish its work, so nothing commits. No-op if already decided.
		d.done = true
		_ = d.u.Rollback()
		return
	}
	// A handler that wrote nothing gets its 200 from net/http after this.
	d.decide(http.StatusOK)
}

func informational(code int) bool {
	return code >= 100 && code < 200 && code != http.StatusSwitchingProtocols
}

// wrap routes every way the status can leave the process through decide,
// keeping the writer's optional interfaces.
func (d *decision) wrap(w http.ResponseWriter) http.ResponseWriter {
	return httpsnoop.Wrap(w, httpsnoop.Hooks{
		WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
			return func(code int) {
				if code < 100 || code > 999 {
					next(code) // net/http panics; the unit rolls back as for any panic
					return
				}
				if informational(code) {
					if !d.done {
						next(code)
					}
					return
				}
				if !d.decide(code) {
					next(code)
					d.out(code)
				}
			}
		},
		Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
			return func(b []byte) (int, error) {
				if d.decide(http.StatusOK) {
					return len(b), nil
				}
				d.out(http.StatusOK)
				return next(b)
			}
		},
		ReadFrom: func(next httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
			return func(src io.Reader) (int64, error) {
				if d.decide(http.StatusOK) {
					return io.Copy(io.Discard, src)
				}
				d.out(http.StatusOK)
				return next(src)
			}
		},
		Flush: func(next httpsnoop.FlushFunc) httpsnoop.FlushFunc {
			return func() {
				d.decide(http.StatusOK)
				d.out(http.StatusOK)
				next()
			}
		},
		FlushError: func(next httpsnoop.FlushErrorFunc) httpsnoop.FlushErrorFunc {
			return func() error {
				d.decide(http.StatusOK)
				d.out(http.StatusOK)
				return next()
			}
		},
		Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
			return func() (net.Conn, *bufio.ReadWriter, error) {
				if d.decide(http.StatusSwitchingProtocols) {
					return nil, nil, ErrCommitFailed
				}
				conn, rw, err := next()
				if err == nil {
					d.out(http.StatusSwitchingProtocols)
				}
				return conn, rw, err
			}
		},
	})
}

// Settings are a middleware's options in framework-neutral form.
type Settings struct {
	Commit      func(status int) bool
	UnitOptions func(r *http.Request) []uow.Option
	Timeout     time.Duration
	Buffer      int
	Retry       *retry.Policy
	RetryAfter  time.Duration
	// Report receives commit failures and rollback errors; nil logs them
	// with slog.Default.
	Report func(r *http.Request, err error)
	// Failure writes the body of the response that replaces the handler's
	// after a failed commit (see Policy.Failure).
	Failure func(w http.ResponseWriter, r *http.Request, status int, err error)
}

// NewConfig validates s and returns the Config to serve requests with. It
// panics with a "uow middleware:" prefix on invalid settings, which are
// programming errors found at start-up.
func NewConfig(m *uow.Manager, s Settings) *Config {
	if m == nil {
		panic("uow middleware: nil uow.Manager")
	}
	if s.Buffer < 0 || s.Timeout < 0 || s.RetryAfter < 0 {
		panic("uow middleware: negative Buffer, Timeout or RetryAfter")
	}
	if s.Retry != nil && s.Buffer == 0 {
		panic("uow middleware: Retry needs Buffer: a streamed response cannot be taken back")
	}
	ra := s.RetryAfter
	if ra == 0 {
		ra = time.Second
	}
	c := &Config{
		Policy: Policy{
			Commit:     s.Commit,
			Retryable:  retry.Retryable, // never a partial or unknown commit: those are 500
			RetryAfter: strconv.Itoa(int((ra + time.Second - 1) / time.Second)),
			Failure:    s.Failure,
		},
		Manager: m, UnitOptions: s.UnitOptions, Timeout: s.Timeout,
		Buffer: s.Buffer, Retry: s.Retry, Report: s.Report,
	}
	if s.Retry != nil {
		c.Retryable = s.Retry.Retryable
	}
	if c.Report == nil {
		c.Report = func(r *http.Request, err error) { logReport(slog.Default(), r, err) }
	}
	return c
}

// logReport is the default Report. A request whose context was cancelled
// (the client left, the server is shutting down) was rolled back as it
// should be: Info. A deadline that passed is the service's problem but not
// a fault: Warn. Anything else (a failed COMMIT, a statement error under a
// status that would have committed) is an Error.
func logReport(l *slog.Logger, r *http.Request, err error) {
	level := slog.LevelError
	switch {
	case errors.Is(err, uow.ErrPartialCommit), errors.Is(err, uow.ErrCommitUnknown):
		// whatever else it wraps, something may have committed
	case errors.Is(err, context.Canceled):
		level = slog.LevelInfo
	case errors.Is(err, context.DeadlineExceeded):
		level = slog.LevelWarn
	}
	l.LogAttrs(r.Context(), level, "uow middleware: unit not committed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
}
