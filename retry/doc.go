// Package retry decides which database errors are worth re-running a whole
// transaction for, and how patiently. It imports no database driver: errors
// are recognised by their behaviour, so importing it links and registers
// nothing.
//
// # Classifiers
//
// [Retryable] recognises transient conflicts by code, anywhere in a chain of
// wrapped errors, never by message text:
//
//   - PostgreSQL 40001 serialization_failure and 40P01 deadlock_detected,
//     from any error with a SQLState() string method, as lib/pq's *pq.Error
//     and pgx's *pgconn.PgError have ([SQLState]);
//   - SQLite SQLITE_BUSY (5) and SQLITE_LOCKED (6), extended codes included,
//     through an error's Code() int method, as modernc.org/sqlite's
//     *sqlite.Error has.
//
// It also retries an error that vouches for being safe to re-run: one whose
// tree holds an error with a method
//
//	RetrySafe() bool
//
// returning true. uow's *BeginError implements it, true for a connection
// that failed at BEGIN, before anything ran.
//
// A [Policy]'s Classifiers add others ([Classifier]). MySQL and MariaDB
// deadlocks (1213) and lock wait timeouts (1205) need the driver's error
// type, so their classifier lives in a module of its own,
// [github.com/uowkit/uowkit/retry/mysqlretry]:
//
//	uow.Retry(retry.Policy{Classifiers: []retry.Classifier{mysqlretry.Retryable}})
//
// # Policy
//
// A [Policy] bounds attempts and elapsed time and backs off exponentially with
// full jitter: each delay is drawn uniformly between zero and a ceiling that
// doubles from BaseDelay up to MaxDelay. [Policy.Do] runs the loop and
// honours context cancellation, also while sleeping. Its zero value is ready
// to use: 5 attempts in all, ceilings from 5ms doubling up to 500ms, no time
// limit. Package uow uses it to re-run a unit of work on a fresh transaction
// (uow.Retry); it re-runs only the outermost unit.
//
// # What is never retried
//
// Errors that are not transient, context errors, and errors that say
// re-running is unsafe: [Retryable] and [Policy.Retryable] are false for any
// error whose tree (wrapped with %w, joined with errors.Join) holds, anywhere,
// a context error or an error with a method
//
//	RetryUnsafe() bool
//
// returning true, whatever else the tree holds (a RetrySafe error included)
// and whatever a policy's Classifiers say. uow's *CommitError implements it
// for a commit whose outcome is unknown or partial.
//
// # Commit outcomes
//
// [CommitOutcome] classifies a failed COMMIT: a server error means it
// certainly failed ([OutcomeFailed]); some driver errors mean it certainly
// rolled back ([OutcomeRolledBack]); everything else, a broken connection or
// a context that ended with COMMIT in flight in particular, means the
// transaction may or may not be committed ([OutcomeUnknown]). Such a commit
// must not be re-run blindly: see docs/retry.md for what callers should do.
package retry
