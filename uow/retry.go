package uow

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/uowkit/uowkit/retry"
)

// retrySetting is a unit's retry configuration.
type retrySetting struct {
	set    bool // Retry or NoRetry was given
	policy *retry.Policy
}

// Retry makes Do re-run the whole callback on a fresh unit (full rollback,
// new BEGIN, so no locks are held while backing off) when it fails with an
// error p.Retryable accepts: serialization failures and deadlocks, at any
// statement or at COMMIT, and connection errors at BEGIN, before any
// statement ran. A commit whose outcome is unknown, or partial, is never
// retried. Only the outermost unit retries: a Do that joins or nests in an
// active unit returns its error so that the outermost Do can retry. After-
// commit hooks of failed attempts never run.
//
// Retries are on by default, with the zero Policy, for units begun with
// Isolation(sql.LevelSerializable); set WithDefaults(Retry(p)) on the manager
// to retry every unit, and NoRetry to opt out.
func Retry(p retry.Policy) Option {
	return func(c *config) { c.retry = retrySetting{set: true, policy: &p} }
}

// NoRetry turns retries off for the unit, even a serializable one.
func NoRetry() Option {
	return func(c *config) { c.retry = retrySetting{set: true} }
}

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

// commitOutcomeUnknown reports whether a COMMIT error leaves the outcome
// unknown: the connection broke with the COMMIT in flight.
func commitOutcomeUnknown(err error) bool {
	return retry.CommitOutcome(err) == retry.OutcomeUnknown
}

// beginConnError reports whether err is a failure to get a connection while
// beginning a transaction (a network error, a connection closed (EOF) or broken, or the
// server's connection_exception class 08, too_many_connections 53300,
// cannot_connect_now 57P03): nothing of the unit ran on that source and
// nothing committed, so re-running the unit is safe.
func beginConnError(err error) bool {
	var be *BeginError
	if !errors.As(err, &be) {
		return false
	}
	if code, ok := retry.SQLState(be.Err); ok {
		return strings.HasPrefix(code, "08") || code == "53300" || code == "57P03"
	}
	var ne net.Error
	return errors.Is(be.Err, driver.ErrBadConn) || errors.Is(be.Err, io.EOF) ||
		errors.Is(be.Err, io.ErrUnexpectedEOF) || errors.As(be.Err, &ne)
}

// doRetrying runs one attempt per fresh unit until p says stop.
func (m *Manager) doRetrying(ctx context.Context, p retry.Policy, opts []Option, fn func(ctx context.Context) error) error {
	user := p.OnRetry
	p.OnRetry = func(ctx context.Context, attempt int, delay time.Duration, err error) {
		m.observe(ctx, Event{Kind: EventRetry, Attempt: attempt, Delay: delay, Err: err})
		if user != nil {
			user(ctx, attempt, delay, err)
		}
	}
	p.Classifiers = append(p.Classifiers[:len(p.Classifiers):len(p.Classifiers)], beginConnError)
	return p.Do(ctx, func(ctx context.Context, _ int) error { return m.once(ctx, opts, fn) })
}
