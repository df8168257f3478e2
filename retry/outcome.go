package retry

import (
	"database/sql"
	"errors"
	"reflect"
	"strings"
)

// Outcome classifies a failed COMMIT.
type Outcome int

const (
	// OutcomeFailed: the server answered COMMIT with an error, so the
	// transaction is certainly not committed. Class 40 errors (40001, 40P01)
	// are worth re-running.
	OutcomeFailed Outcome = iota + 1
	// OutcomeRolledBack: the driver reports, without a server error, that the
	// transaction was rolled back and COMMIT was never applied: lib/pq's
	// ErrInFailedTransaction, pgx's ErrTxCommitRollback, sql.ErrTxDone.
	OutcomeRolledBack
	// OutcomeUnknown: anything else, typically a broken connection
	// (driver.ErrBadConn, io.EOF, a network error, pgx's "conn closed"), a
	// context that ended while COMMIT was in flight, or a server error that
	// ends the session (class 08, 57P01, 57P02) or says so (40003). The
	// COMMIT may or may not have been applied, and re-running the transaction
	// could apply it twice.
	OutcomeUnknown
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case OutcomeFailed:
		return "failed"
	case OutcomeRolledBack:
		return "rolled back"
	case OutcomeUnknown:
		return "unknown"
	}
	return "invalid"
}

// CommitOutcome classifies a non-nil error returned by a transaction's Commit.
// It recognises lib/pq's ErrInFailedTransaction and pgx's ErrTxCommitRollback
// anywhere in err's tree without importing either driver, by their exact
// text, and sql.ErrTxDone with errors.Is.
//
// It deliberately ignores pgconn's SafeToRetry: pgx reports a connection
// closed during COMMIT as safe to retry although the server may have
// committed.
//
// Context errors are [OutcomeUnknown]: database/sql returns the context's
// error without sending COMMIT when the transaction's context is already done
// when Commit is called, but pgx's database/sql driver commits with that same
// context and returns the same bare error when it ends while COMMIT is in
// flight, applied or not. Check ctx.Err() before calling Commit to tell the
// first case apart.
func CommitOutcome(err error) Outcome {
	if code, ok := SQLState(err); ok {
		if sessionLost(code) {
			return OutcomeUnknown
		}
		return OutcomeFailed
	}
	if errors.Is(err, sql.ErrTxDone) || inTree(err, rolledBackSentinel) {
		return OutcomeRolledBack
	}
	return OutcomeUnknown
}

// The texts of the drivers' sentinels for a COMMIT that the server answered
// with ROLLBACK. They are plain errors.New values, with no method to test
// for, and comparing with errors.Is would mean importing the drivers: that
// links them into every program that imports this package, and registers
// lib/pq as "postgres", which makes a program that registers its own
// "postgres" driver panic at start. So they are recognised by their exact
// text instead. The tests classify the drivers' real values, so an upgrade
// that rewords one of them turns the tests red instead of silently making
// such commits unknown.
const (
	pqInFailedTransaction = "pq: could not complete operation in a failed transaction" // lib/pq's ErrInFailedTransaction
	pgxTxCommitRollback   = "commit unexpectedly resulted in rollback"                 // pgx's ErrTxCommitRollback
)

// errorsNew is the type of the values errors.New returns.
var errorsNew = reflect.TypeOf(errors.New(""))

// rolledBackSentinel reports whether err is one of the drivers' rollback
// sentinels: a value made by errors.New, so that no other error, wrapping
// one or only worded alike, is taken for it, and no Error method other than
// errors.New's is called.
func rolledBackSentinel(err error) bool {
	if reflect.TypeOf(err) != errorsNew {
		return false
	}
	msg := err.Error()
	return msg == pqInFailedTransaction || msg == pgxTxCommitRollback
}

// sessionLost reports whether a SQLSTATE received in answer to COMMIT leaves
// its outcome open: a connection exception (class 08, which drivers also use
// for failures of their own), a session terminated by an operator or a crash
// of another backend (57P01, 57P02: the server may have flushed the commit
// record before the signal was handled), or statement_completion_unknown
// (40003, CockroachDB's ambiguous result).
func sessionLost(code string) bool {
	return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "40003"
}
