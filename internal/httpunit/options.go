package httpunit

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/uowkit/uowkit/uow"
)

// Options has the fields of nethttp.Options, in the same order and of the
// same types, without their documentation (see there): the adapters convert
// a nethttp.Options to it, so the compiler keeps the two identical, and the
// validation and defaults live here, once, for every adapter.
type Options struct {
	Commit          func(status int) bool
	Skipper         func(r *http.Request) bool
	UnitOptions     func(r *http.Request) []uow.Option
	Timeout         time.Duration
	ErrorHandler    func(r *http.Request, err error)
	FailureResponse func(w http.ResponseWriter, r *http.Request, status int, err error)
	Buffer          int
	RetryAfter      time.Duration
	HookTimeout     time.Duration
	HookGroup       *sync.WaitGroup
	Consistency     bool
}

// ConsistencyHeader carries a uow.Consistency between requests.
const ConsistencyHeader = "X-Consistency-LSN"

// Defaults of Options' zero fields.
const (
	defaultRetryAfter  = time.Second
	defaultHookTimeout = 10 * time.Second
)

// Config is a validated Options with its defaults applied: what a
// middleware needs to serve requests in units of m.
type Config struct {
	m          *uow.Manager
	o          Options
	retryAfter string // Retry-After of a 503, whole seconds as text
}

// New validates o for the adapter named prefix ("nethttp", "uowecho") and
// returns the Config to serve requests with. It panics, with prefix, on a nil
// manager or a negative Buffer, Timeout, RetryAfter or HookTimeout: those are
// programming errors, found when the middleware is built, never at request
// time.
func New(prefix string, m *uow.Manager, o Options) *Config {
	if msg := check(m, o); msg != "" {
		panic(prefix + ": " + msg)
	}
	ra := o.RetryAfter
	if ra == 0 {
		ra = defaultRetryAfter
	}
	if o.HookTimeout == 0 {
		o.HookTimeout = defaultHookTimeout
	}
	if o.ErrorHandler == nil {
		o.ErrorHandler = func(r *http.Request, err error) { logReport(slog.Default(), r, err) }
	}
	return &Config{m: m, o: o, retryAfter: strconv.Itoa(int((ra + time.Second - 1) / time.Second))}
}

// check returns what is wrong with m and o, or "".
func check(m *uow.Manager, o Options) string {
	switch {
	case m == nil:
		return "nil *uow.Manager"
	case o.Buffer < 0:
		return "negative Options.Buffer"
	case o.Timeout < 0:
		return "negative Options.Timeout"
	case o.RetryAfter < 0:
		return "negative Options.RetryAfter"
	case o.HookTimeout < 0:
		return "negative Options.HookTimeout"
	}
	return ""
}

// Skip reports whether r is to be served without a unit.
func (c *Config) Skip(r *http.Request) bool {
	return c.o.Skipper != nil && c.o.Skipper(r)
}

func (c *Config) unitOptions(r *http.Request) []uow.Option {
	if c.o.UnitOptions != nil {
		return c.o.UnitOptions(r)
	}
	return nil
}

func (c *Config) commits(status int) bool {
	if c.o.Commit != nil {
		return c.o.Commit(status)
	}
	return status < 400
}

func (c *Config) report(r *http.Request, err error) {
	if err != nil {
		c.o.ErrorHandler(r, err)
	}
}

// deadline returns the context to run one handler in: ctx, bounded by
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
func (c *Config) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.o.Timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.o.Timeout)
}

// logReport is the default ErrorHandler. A request whose context was
// cancelled (the client left, the server is shutting down) was rolled back
// as it should be: Info. A deadline that passed is the service's problem but
// not a fault: Warn. Anything else (a failed COMMIT, a statement error under
// a status that would have committed) is an Error.
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
