package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// SQLState returns the SQLSTATE code carried anywhere in err's chain, by any
// error with a SQLState() string method: lib/pq's *pq.Error and pgx's
// *pgconn.PgError both have one.
func SQLState(err error) (code string, ok bool) {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		if code = s.SQLState(); code != "" {
			return code, true
		}
	}
	return "", false
}

// SQLite result codes matched through an error's Code() int method, as
// modernc.org/sqlite's *sqlite.Error has; the low byte is the primary code.
const (
	sqliteBusy   = 5
	sqliteLocked = 6
)

// Retryable reports whether err, anywhere in its chain, is a transient
// failure that is expected to go away when the whole transaction is re-run:
//
//   - PostgreSQL 40001 serialization_failure and 40P01 deadlock_detected
//     (lib/pq, pgx, or any error with a SQLState() string method);
//   - SQLite SQLITE_BUSY and SQLITE_LOCKED, extended codes included, through
//     an error's Code() int method (modernc.org/sqlite);
//   - any error whose tree holds an error with a RetrySafe() bool method
//     returning true: its maker vouches that nothing ran, so re-running is
//     safe (uow's *BeginError says so for a connection that failed at BEGIN,
//     before any statement). RetrySafe() == false changes nothing.
//
// Errors are matched by code or behaviour, never by message. MySQL and
// MariaDB error numbers are not known here, so that this package links no
// driver: add [github.com/uowkit/uowkit/retry/mysqlretry.Retryable] to a
// [Policy]'s Classifiers.
//
// Context errors are never retryable, even joined with a conflict or a
// RetrySafe error: the caller gave up. Neither is an error whose tree holds,
// anywhere, an error reporting RetryUnsafe() == true (the uow package marks
// unknown and partial commits so), even when a conflict caused it: re-running
// could apply the work twice. Any error with a Code() int method whose low
// byte is 5 or 6 counts as SQLite's BUSY or LOCKED, whichever library it comes
// from.
func Retryable(err error) bool {
	if !maybeRetryable(err) {
		return false
	}
	if inTree(err, retrySafe) {
		return true
	}
	if code, ok := SQLState(err); ok {
		return code == "40001" || code == "40P01"
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		c := coded.Code() & 0xff
		return c == sqliteBusy || c == sqliteLocked
	}
	return false
}

// maybeRetryable rules out what no classifier may retry: nil, a context
// error, and an error that says re-running is unsafe.
func maybeRetryable(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, context.DeadlineExceeded) && !inTree(err, retryUnsafe)
}

// retryUnsafe reports whether err itself says re-running is unsafe.
func retryUnsafe(err error) bool {
	u, ok := err.(interface{ RetryUnsafe() bool })
	return ok && u.RetryUnsafe()
}

// retrySafe reports whether err itself vouches that re-running is safe.
func retrySafe(err error) bool {
	s, ok := err.(interface{ RetrySafe() bool })
	return ok && s.RetrySafe()
}

// inTree walks err's whole tree, through Unwrap() error and Unwrap() []error
// (errors.Join, fmt.Errorf with several %w), and reports whether match holds
// for any error in it. errors.As would stop at the first error with the
// method asked for, and miss an unsafe one joined after a safe one.
func inTree(err error, match func(error) bool) bool {
	for err != nil {
		if match(err) {
			return true
		}
		switch w := err.(type) {
		case interface{ Unwrap() error }:
			err = w.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range w.Unwrap() {
				if inTree(e, match) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// Classifier reports whether it recognises err as retryable.
type Classifier func(err error) bool

// Default values of a Policy's zero fields.
const (
	// DefaultMaxAttempts is the number of attempts, the first included, of
	// a Policy whose MaxAttempts is not positive.
	DefaultMaxAttempts = 5
	// DefaultBaseDelay is the first backoff ceiling of a Policy whose
	// BaseDelay is not positive.
	DefaultBaseDelay = 5 * time.Millisecond
	// DefaultMaxDelay caps the backoff ceiling of a Policy whose MaxDelay is
	// not positive (unless its BaseDelay is larger).
	DefaultMaxDelay = 500 * time.Millisecond
)

// Policy says how often and how patiently to retry. The zero value is usable:
// DefaultMaxAttempts attempts in all, backoff ceilings from DefaultBaseDelay
// doubling up to DefaultMaxDelay, no time limit beyond the attempts.
type Policy struct {
	// MaxAttempts is the number of attempts, the first included; 1 means no
	// retry; zero or less means DefaultMaxAttempts.
	MaxAttempts int
	// BaseDelay is the backoff ceiling after the first failure; it doubles
	// with each attempt. Zero means DefaultBaseDelay.
	BaseDelay time.Duration
	// MaxDelay caps the backoff ceiling. Zero means DefaultMaxDelay, or
	// BaseDelay when that is larger.
	MaxDelay time.Duration
	// MaxElapsed stops retrying when the next attempt would start later than
	// this long after the first one started, that is when the time elapsed
	// plus the next delay exceeds it. Zero means no limit.
	MaxElapsed time.Duration
	// Classifiers recognise further retryable errors, in addition to
	// Retryable (mysqlretry.Retryable, for one). They cannot override the
	// refusals of Policy.Retryable.
	Classifiers []Classifier
	// OnRetry, when set, is called before each backoff with the number of
	// the attempt that failed (from 1), the delay about to be slept and the
	// attempt's error.
	OnRetry func(ctx context.Context, attempt int, delay time.Duration, err error)
}

// Retryable reports whether the policy retries err: the package's
// [Retryable] (which includes an error tree holding RetrySafe() == true) or
// one of its Classifiers. Whatever the Classifiers say, it is false for nil,
// for context errors, and for any error whose tree holds an error with a
// RetryUnsafe() bool method returning true (the uow package marks unknown and
// partial commits so), however deeply wrapped or joined: re-running could
// apply the work twice.
func (p Policy) Retryable(err error) bool {
	if !maybeRetryable(err) {
		return false
	}
	if Retryable(err) {
		return true
	}
	for _, c := range p.Classifiers {
		if c != nil && c(err) {
			return true
		}
	}
	return false
}

// attempts returns the number of attempts the policy allows, the first
// included: MaxAttempts, or DefaultMaxAttempts when it is not positive.
func (p Policy) attempts() int {
	if p.MaxAttempts <= 0 {
		return DefaultMaxAttempts
	}
	return p.MaxAttempts
}

// sleep waits d or until ctx is done, whichever comes first, and returns
// ctx's error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ceiling returns the largest backoff after the given failed attempt (from 1):
// BaseDelay·2^(attempt-1), capped at MaxDelay, without overflowing however
// large attempt is.
func (p Policy) ceiling(attempt int) time.Duration {
	base, maxd := p.BaseDelay, p.MaxDelay
	if base <= 0 {
		base = DefaultBaseDelay
	}
	if maxd <= 0 {
		maxd = max(DefaultMaxDelay, base)
	}
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt; i++ {
		if d >= maxd/2 {
			return maxd
		}
		d *= 2
	}
	return min(d, maxd)
}

// delay returns the backoff after the given failed attempt: exponential with
// full jitter, uniform in [0, ceiling(attempt)], so that conflicting callers
// spread out instead of colliding again.
func (p Policy) delay(attempt int) time.Duration {
	// In uint64, the ceiling plus one cannot overflow even at MaxInt64.
	return time.Duration(rand.Uint64N(uint64(p.ceiling(attempt)) + 1))
}

// ExhaustedError is returned by Do when every attempt failed retryably.
type ExhaustedError struct {
	// Attempts is how many attempts were made.
	Attempts int
	// Err is the last attempt's error.
	Err error
}

// Error describes the last failure.
func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("retry: gave up after %d attempts: %v", e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *ExhaustedError) Unwrap() error { return e.Err }

// Do calls fn, with ctx and the attempt's number (from 1), until it succeeds
// or returns an error the policy does not retry (returned as is), attempts
// run out or MaxElapsed would be passed (*ExhaustedError wrapping the last
// error), or ctx is done. ctx is checked before each attempt and during each
// backoff, which then ends at once with an error wrapping both ctx's error and
// the last attempt's; if ctx is done before the first attempt, fn is not
// called and ctx's error is returned.
func (p Policy) Do(ctx context.Context, fn func(ctx context.Context, attempt int) error) error {
	start := time.Now()
	var err error
	for attempt := 1; ; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			if err == nil {
				return cerr
			}
			return fmt.Errorf("retry: %w (last attempt: %w)", cerr, err)
		}
		if err = fn(ctx, attempt); err == nil || !p.Retryable(err) {
			return err
		}
		if attempt >= p.attempts() {
			return &ExhaustedError{Attempts: attempt, Err: err}
		}
		delay := p.delay(attempt)
		if p.MaxElapsed > 0 && time.Since(start)+delay > p.MaxElapsed {
			return &ExhaustedError{Attempts: attempt, Err: err}
		}
		if p.OnRetry != nil {
			p.OnRetry(ctx, attempt, delay, err)
		}
		if serr := sleep(ctx, delay); serr != nil {
			return fmt.Errorf("retry: %w (last attempt: %w)", serr, err)
		}
	}
}
