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
	// Timeout bounds each unit (0: none).
	Timeout time.Duration
	// Report receives commit failures and rollback errors.
	Report func(r *http.Request, err error)
	// Buffer enables buffered mode (bytes; 0: streaming).
	Buffer int
	// Retry re-runs the handler in buffered mode (nil: never).
	Retry *retry.Policy
}

func (c *Config) options(r *http.Request) []uow.Option {
	var opts []uow.Option
	if c.UnitOptions != nil {
		opts = c.UnitOptions(r)
	}
	if c.Timeout > 0 {
		opts = append(opts, uow.Timeout(c.Timeout))
	}
	return opts
}

func (c *Config) report(r *http.Request, err error) {
	if err != nil && c.Report != nil {
		c.Report(r, err)
	}
}

// Serve runs next for one request inside a lazy unit and decides the unit's
// fate once, when the response status becomes known. next receives the
// wrapped writer and the request carrying the unit.
func (c *Config) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request)) {
	if c.Buffer > 0 {
		c.serveBuffered(w, r, next)
		return
	}
	ctx, u := c.Manager.Begin(r.Context(), c.options(r)...)
	d := &decision{c: c, u: u, r: r, w: w}
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
	done     bool
	replaced bool
	returned bool // the handler returned, rather than panicked or called runtime.Goexit
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
		d.c.WriteFailure(d.w, o)
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
				}
			}
		},
		Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
			return func(b []byte) (int, error) {
				if d.decide(http.StatusOK) {
					return len(b), nil
				}
				return next(b)
			}
		},
		ReadFrom: func(next httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
			return func(src io.Reader) (int64, error) {
				if d.decide(http.StatusOK) {
					return io.Copy(io.Discard, src)
				}
				return next(src)
			}
		},
		Flush: func(next httpsnoop.FlushFunc) httpsnoop.FlushFunc {
			return func() {
				d.decide(http.StatusOK)
				next()
			}
		},
		FlushError: func(next httpsnoop.FlushErrorFunc) httpsnoop.FlushErrorFunc {
			return func() error {
				d.decide(http.StatusOK)
				return next()
			}
		},
		Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
			return func() (net.Conn, *bufio.ReadWriter, error) {
				if d.decide(http.StatusSwitchingProtocols) {
					return nil, nil, ErrCommitFailed
				}
				return next()
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
			Retryable:  retry.Retryable,
			RetryAfter: strconv.Itoa(int((ra + time.Second - 1) / time.Second)),
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
