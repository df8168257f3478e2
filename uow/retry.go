package uow

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/uowkit/uowkit/internal/bridge"
	"github.com/uowkit/uowkit/retry"
)

func init() {
	bridge.RetryPolicy = func(m, opts any) *retry.Policy {
		mgr := m.(*Manager)
		c := mgr.config(opts.([]Option))
		if c.err != nil {
			return nil
		}
		return c.policy()
	}
	bridge.Retry = func(m any, ctx context.Context, p *retry.Policy, attempt func(ctx context.Context, n int) error) error {
		return m.(*Manager).retrying(ctx, p, attempt)
	}
}

// retrySetting is a unit's retry configuration.
type retrySetting struct {
	set    bool // Retry or NoRetry was given
	policy *retry.Policy
}

// Retry makes Do re-run the whole callback on a fresh unit (full rollback,
// new BEGIN, so no locks are held while backing off) when it fails with an
// error p.Retryable accepts: serialization failures and deadlocks, at any
// statement or at COMMIT, and a source that could not be begun for a
// connection failure (a *BeginError, before any statement ran). A commit
// whose outcome is unknown, or partial, is never retried. Only the outermost
// unit retries: a Do that joins or nests in an active unit returns its error
// so that the outermost Do can retry. After-commit hooks of failed attempts
// never run.
//
// Retries are on by default, with the zero Policy, for units begun with
// Isolation(sql.LevelSerializable); set WithDefaults(Retry(p)) on the manager
// to retry every unit, and NoRetry to opt out. The HTTP middleware, in
// buffered mode, re-runs a whole request by the same policy.
//
// Giving Retry twice, or with NoRetry, in one call is contradictory
// (ErrInvalidOptions).
func Retry(p retry.Policy) Option { return Option{bit: setRetry, policy: &p} }

// NoRetry turns retries off for the unit, even a serializable one.
func NoRetry() Option { return Option{bit: setRetry} }

// policy returns the retry policy of a root unit begun with c, or nil.
func (c config) policy() *retry.Policy {
	if c.retry.set {
		return c.retry.policy
	}
	if c.isolation == sql.LevelSerializable {
		return &retry.Policy{}
	}
	return nil
}

// connectionLost reports whether err says that the connection a statement
// was sent on is gone or unusable, the server never having run it: a network
// error, a connection closed (EOF) or reported bad, or the server's
// connection_exception class 08, admin_shutdown and crash_shutdown (57P01,
// 57P02: a backend terminated while the connection sat idle in the pool
// answers the next statement so), cannot_connect_now (57P03) or
// too_many_connections (53300); or an error that says it failed before
// anything was sent (SafeToRetry() true: pgx's "conn closed" on a
// connection it already knew was broken).
func connectionLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var safe interface{ SafeToRetry() bool }
	if errors.As(err, &safe) && safe.SafeToRetry() {
		return true
	}
	if code, ok := retry.SQLState(err); ok {
		return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03" || code == "53300"
	}
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.As(err, &ne)
}

// doRetrying runs one attempt per fresh unit until p says stop.
func (m *Manager) doRetrying(ctx context.Context, p *retry.Policy, c config, fn func(ctx context.Context) error) error {
	return m.retrying(ctx, p, func(ctx context.Context, attempt int) error {
		c.attempt = attempt
		return m.once(ctx, c, fn)
	})
}

// retrying runs attempt by p, reporting each backoff to the Observer as an
// EventRetry that starts before the backoff and ends when the next attempt
// starts (or the context ends). Do and the HTTP middleware's buffered
// retries both run through it: one retry loop.
func (m *Manager) retrying(ctx context.Context, p *retry.Policy, attempt func(ctx context.Context, n int) error) error {
	if m.observer == nil {
		return p.Do(ctx, attempt)
	}
	var (
		pending  *Event
		rctx     context.Context
		began    time.Time
		finished = func() {
			if pending != nil {
				m.end(rctx, *pending, began)
				pending = nil
			}
		}
	)
	defer finished()
	q := *p
	user := p.OnRetry
	q.OnRetry = func(ctx context.Context, n int, delay time.Duration, err error) {
		if user != nil {
			user(ctx, n, delay, err)
		}
		e := Event{Kind: EventRetry, Attempt: n, Delay: delay, Err: err}
		rctx, began = m.start(ctx, e)
		pending = &e
	}
	return q.Do(ctx, func(ctx context.Context, n int) error {
		finished()
		return attempt(ctx, n)
	})
}
