package uow

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrDone is returned when a finished unit (committed or rolled back) is
	// used again: by a repository statement, Commit, or a hook registration.
	// A finished unit never falls back to autocommit.
	ErrDone = errors.New("uow: unit already finished")

	// ErrRollbackOnly is returned by Commit when the unit was marked
	// rollback-only: a joined unit failed, a statement failed (PostgreSQL
	// aborts the transaction, SQLSTATE 25P02), or SetRollbackOnly was called.
	// The unit has been rolled back. The error also wraps the cause.
	ErrRollbackOnly = errors.New("uow: unit is rollback-only")

	// ErrNoUnit is returned when an operation needs an active unit in the
	// context and there is none (Mandatory propagation, AfterCommit,
	// repo.TxFrom).
	ErrNoUnit = errors.New("uow: no active unit in context")

	// ErrIncompatible is returned when a unit would join (or nest in) an
	// active unit whose options do not satisfy it: a read-only or stricter
	// isolation requirement inside a unit begun read-write or with a weaker
	// isolation level.
	ErrIncompatible = errors.New("uow: options incompatible with the active unit")

	// ErrUnknownSource is returned by statements on a unit's handle for a
	// database the manager was not given (uow.New, uow.WithSource), or a
	// nil one: they are refused rather than run outside the unit.
	ErrUnknownSource = errors.New("uow: unknown source")

	// ErrBusy is returned when a statement is issued on a unit's transaction
	// while a Rows or Row obtained from the same transaction is still open.
	// One connection runs one statement at a time; close the Rows (or Scan
	// the Row) first. Statements that do not return a cursor (Exec, Get,
	// Select, NamedExec) are serialised and may be issued concurrently.
	// Nothing was sent, so the unit is not marked rollback-only.
	ErrBusy = errors.New("uow: transaction busy with an open cursor")

	// ErrNestedOverlap is returned when two nested units (savepoints) of one
	// transaction are used concurrently on one source: savepoints form a
	// stack per connection, so overlapping ones cannot be rolled back
	// independently.
	ErrNestedOverlap = errors.New("uow: overlapping nested units on one source")

	// ErrPartialCommit matches (with errors.Is) a *CommitError where at least
	// one source committed before another failed.
	ErrPartialCommit = errors.New("uow: partial commit")

	// ErrCommitUnknown is returned (wrapped in a *CommitError) when the
	// connection broke while COMMIT was in flight: the transaction may or may
	// not have been committed, and it is never retried. See docs/retry.md for
	// what callers should do (idempotency keys, re-reading), and
	// ResolveOutcomes for asking the server instead.
	ErrCommitUnknown = errors.New("uow: commit outcome unknown")

	// ErrCommitPending matches (with errors.Is) a *CommitError of a
	// two-phase commit (Atomic) whose decision to commit is durable but
	// whose COMMIT PREPARED could not be confirmed on some sources (listed
	// in Pending): those sources stay prepared, holding their locks, until
	// Manager.Recover commits them. The work is committed, not yet visible
	// everywhere; it must not be retried.
	ErrCommitPending = errors.New("uow: commit decided, pending on some sources")

	// ErrNoPreparedTransactions is returned by Manager.Recover (which an
	// application calls at start-up) when a PostgreSQL source has
	// max_prepared_transactions = 0: two-phase commits would fail at
	// PREPARE TRANSACTION.
	ErrNoPreparedTransactions = errors.New("uow: prepared transactions are disabled (max_prepared_transactions = 0)")
)

// CommitError reports a failed commit of a unit, source by source. Sources
// commit in the order they were first used; when one fails, every source
// after it is rolled back. Committed lists the sources whose transactions are
// durable: when it is not empty, the commit was partial (errors.Is(err,
// ErrPartialCommit) reports true) and the caller must reconcile.
type CommitError struct {
	// Committed names the sources that committed before the failure.
	Committed []string
	// Failed names the source whose COMMIT failed.
	Failed string
	// RolledBack names the sources rolled back after the failure.
	RolledBack []string
	// Unknown is true when the failed source's outcome cannot be known (the
	// connection broke during COMMIT, and ResolveOutcomes, if set, could not
	// ask the server within its bound); the error then also matches
	// ErrCommitUnknown.
	Unknown bool
	// Pending names, for a two-phase commit (Atomic) whose decision to
	// commit is durable, the sources whose COMMIT PREPARED was not
	// confirmed (Failed first): Manager.Recover commits them. The error
	// then matches ErrCommitPending.
	Pending []string
	// Err is the error COMMIT returned on the failed source.
	Err error
}

// Error describes which sources committed, failed and rolled back.
func (e *CommitError) Error() string {
	var b strings.Builder
	switch {
	case len(e.Pending) > 0:
		b.WriteString("uow: commit decided, PENDING on some sources: ")
	case len(e.Committed) > 0:
		b.WriteString("uow: PARTIAL COMMIT: ")
	default:
		b.WriteString("uow: commit failed: ")
	}
	if e.Unknown {
		fmt.Fprintf(&b, "outcome unknown on source %q: %v", e.Failed, e.Err)
	} else {
		fmt.Fprintf(&b, "source %q: %v", e.Failed, e.Err)
	}
	if len(e.Committed) > 0 {
		fmt.Fprintf(&b, "; committed %v", e.Committed)
	}
	if len(e.Pending) > 0 {
		fmt.Fprintf(&b, "; pending until recovery commits them %v", e.Pending)
	}
	if len(e.RolledBack) > 0 {
		fmt.Fprintf(&b, "; rolled back %v", e.RolledBack)
	}
	return b.String()
}

// Unwrap returns the driver's error.
func (e *CommitError) Unwrap() error { return e.Err }

// Is reports ErrPartialCommit when some source committed and
// ErrCommitUnknown when the outcome of the failed source is unknown.
func (e *CommitError) Is(target error) bool {
	switch target {
	case ErrPartialCommit:
		return len(e.Committed) > 0 && len(e.Pending) == 0
	case ErrCommitUnknown:
		return e.Unknown
	case ErrCommitPending:
		return len(e.Pending) > 0
	}
	return false
}

// RetryUnsafe reports true when the outcome is unknown, partial or pending: re-running
// the unit could apply its work twice. The retry package honours it.
func (e *CommitError) RetryUnsafe() bool {
	return e.Unknown || len(e.Committed) > 0 || len(e.Pending) > 0
}

// HookError reports a failed or panicking after-commit or after-rollback hook.
// It is delivered to the manager's Observer; the unit's outcome is unaffected.
type HookError struct {
	// Phase is "after-commit" or "after-rollback".
	Phase string
	// Index is the hook's position in registration order.
	Index int
	// Panic holds the recovered value when the hook panicked.
	Panic any
	// Err is the hook's error, or a description of the panic.
	Err error
}

// Error describes the hook failure.
func (e *HookError) Error() string {
	return fmt.Sprintf("uow: %s hook #%d: %v", e.Phase, e.Index, e.Err)
}

// Unwrap returns the hook's error.
func (e *HookError) Unwrap() error { return e.Err }
