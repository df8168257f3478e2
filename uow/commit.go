package uow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/uowkit/uowkit/internal/bridge"
	"github.com/uowkit/uowkit/retry"
)

// This file holds how a unit finishes: the root's commit protocol over its
// sources, rollback, and the abort when its context ends. The unit's lock
// only guards the state changes; every COMMIT and ROLLBACK runs outside it,
// with its branch's statement lock.

// Commit finishes the unit successfully.
//
// For the root unit it commits every source in the order they were first
// used, then runs the AfterCommit hooks. If one source's COMMIT fails, the
// sources after it are rolled back and a *CommitError says exactly which
// committed, failed and rolled back; the AfterRollback hooks run only if
// nothing committed and the outcome is known (see AfterRollback). If the
// unit is rollback-only, or its context has ended, everything is rolled
// back and the error says why. A unit that never used a source commits with
// no database round trip. When the unit's context ends while a COMMIT is in
// flight, the COMMIT is interrupted where the driver allows it (pgx does,
// lib/pq lets it finish), and an interrupted COMMIT is reported as unknown:
// it was sent, so it may have been applied. A manager made with
// ResolveOutcomes asks the server what became of such a COMMIT, and reports
// that instead.
//
// For a joined unit, Commit only ends its participation: the outer unit
// commits. For a nested unit it releases the savepoint; its hooks move to the
// enclosing unit.
//
// Commit on a finished unit returns ErrDone; on a nil unit, ErrNoUnit.
func (u *Unit) Commit() error {
	if u == nil {
		return ErrNoUnit
	}
	if u.err != nil {
		return u.err
	}
	defer u.cancelTimeout()
	switch u.kind {
	case kindJoined:
		return u.commitJoined()
	case kindNested:
		return u.commitNested()
	}
	return u.commitRoot()
}

func (u *Unit) cancelTimeout() {
	if u.cancel != nil {
		u.cancel()
	}
}

func (u *Unit) commitRoot() error {
	t := u.t
	t.mu.Lock()
	if u.state != stateActive {
		t.awaitOver()
		t.mu.Lock()
		defer t.mu.Unlock()
		return u.doneErr()
	}
	var cause error
	switch {
	case t.ctx.Err() != nil:
		cause = fmt.Errorf("uow: commit: %w", context.Cause(t.ctx))
	case u.rollbackOnly != nil:
		cause = fmt.Errorf("%w: %w", ErrRollbackOnly, u.rollbackOnly)
	}
	u.state = stateFinishing
	branches := t.branches
	t.mu.Unlock()
	if cause != nil {
		err := errors.Join(cause, t.rollbackAll(branches, cause))
		outcome := OutcomeRolledBack
		if errors.Is(cause, ErrRollbackOnly) {
			outcome = OutcomeRollbackOnly
		}
		u.end(stateRolledBack, nil, phaseAfterRollback, outcome, err)
		return err
	}
	var err error
	if t.opts.atomic && !t.opts.readOnly && len(branches) > 1 {
		err = t.commitTwoPhase(branches)
	} else {
		err = t.commitAll(branches)
	}
	switch o := commitOutcome(err); o {
	case OutcomeCommitted:
		t.recordPositions(branches)
		u.end(stateCommitted, nil, phaseAfterCommit, o, nil)
	case OutcomePartial, OutcomeUnknown, OutcomePending:
		// Some of the work is, or may be, durable: neither "it committed"
		// nor "it rolled back" is true, so no hook runs. The caller has the
		// *CommitError that says which source is in which state.
		u.end(stateRolledBack, nil, "", o, err)
	default:
		u.end(stateRolledBack, nil, phaseAfterRollback, o, err)
	}
	return err
}

// commitOutcome classifies commitAll's result.
func commitOutcome(err error) Outcome {
	if err == nil {
		return OutcomeCommitted
	}
	return failedCommitOutcome(err)
}

// failedCommitOutcome classifies a failed commit; kept apart so that a
// successful one allocates nothing.
func failedCommitOutcome(err error) Outcome {
	var ce *CommitError
	switch {
	case !errors.As(err, &ce):
		return OutcomeRolledBack
	case ce.Unknown:
		return OutcomeUnknown
	case len(ce.Pending) > 0:
		return OutcomePending
	case len(ce.Committed) > 0:
		return OutcomePartial
	}
	return OutcomeRolledBack
}

// commitAll commits every branch in order of first use; on a failure it
// rolls back the rest and reports each source's fate. It first waits for
// every BEGIN still in flight (another goroutine's first use): one that
// failed means that goroutine's work was not done, so nothing commits.
func (t *txn) commitAll(branches []*branch) error {
	if err := t.awaitBegins(branches); err != nil {
		return err
	}
	for i, b := range branches {
		err, unknown := t.commitBranch(b, i == 0)
		if err == nil {
			continue
		}
		ce := &CommitError{Failed: b.src.name, Err: err, Unknown: unknown}
		for _, c := range branches[:i] {
			ce.Committed = append(ce.Committed, c.src.name)
		}
		for _, r := range branches[i+1:] {
			_ = t.finish(r)
			ce.RolledBack = append(ce.RolledBack, r.src.name)
		}
		return ce
	}
	return nil
}

// awaitBegins waits for every BEGIN still in flight; if one failed, it
// rolls everything back and says so.
func (t *txn) awaitBegins(branches []*branch) error {
	for _, b := range branches {
		t.await(b)
	}
	for _, b := range branches {
		if b.err != nil {
			err := fmt.Errorf("uow: commit: a source could not be begun: %w", b.err)
			return errors.Join(err, t.rollbackAll(branches, err))
		}
	}
	return nil
}

// commitBranch sends b's COMMIT and says whether a failure leaves its
// outcome unknown.
//
// An abort that came before the first COMMIT stops the protocol: nothing
// is sent, and everything rolls back. Once a source has committed, the
// others are committed all the same, rather than leave a partial commit
// behind (a COMMIT in flight is still interrupted where the driver allows).
func (t *txn) commitBranch(b *branch, first bool) (err error, unknown bool) {
	b.sem <- struct{}{} // a statement in flight finishes first
	defer b.release()
	e := Event{Kind: EventCommit, Source: b.src.name}
	octx, start := t.m.start(t.obsCtx(), e)
	b.closeCursors()
	t.mu.Lock()
	aborted := t.aborted && first
	if !aborted {
		t.committing = b // an abort from now on interrupts this COMMIT
	}
	t.mu.Unlock()
	if aborted {
		// The unit's context ended before the COMMIT was sent: the
		// transaction is rolled back, certainly.
		err = fmt.Errorf("uow: commit not sent: %w", context.Cause(t.ctx))
		e.Err = err
		t.m.end(octx, e, start)
		_ = t.finishLocked(b)
		return err, false
	}
	x, err := t.xactID(b)
	if err != nil {
		// No COMMIT was sent: the transaction rolls back, certainly.
		t.mu.Lock()
		t.committing = nil
		t.mu.Unlock()
		err = fmt.Errorf("uow: commit not sent: reading the transaction id: %w", err)
		e.Err = err
		t.m.end(octx, e, start)
		_ = t.finishLocked(b)
		return err, false
	}
	err = b.tx.Commit()
	t.mu.Lock()
	t.committing = nil
	t.mu.Unlock()
	b.closed, b.cursors = true, nil
	err, unknown = commitResult(b, err)
	if unknown {
		err, unknown = t.resolve(b, x, err)
	}
	e.Err = err
	t.m.end(octx, e, start)
	return err, unknown
}

// commitResult says whether a COMMIT's failure leaves its outcome unknown.
func commitResult(b *branch, err error) (error, bool) {
	switch {
	case err == nil:
		return nil, false
	case notSent(err):
		// Refused before anything reached the server (the abort came
		// between the check above and the COMMIT): rolled back. The
		// abort's cause goes with it (database/sql says only ErrTxDone).
		if b.ctx.Err() != nil && !errors.Is(err, context.Cause(b.ctx)) {
			return fmt.Errorf("uow: commit not sent: %w (%w)", err, context.Cause(b.ctx)), false
		}
		return fmt.Errorf("uow: commit not sent: %w", err), false
	case b.ctx.Err() != nil:
		// Interrupted in flight by an abort: it was sent, so it may have
		// been applied.
		return fmt.Errorf("%w (%w)", err, context.Cause(b.ctx)), true
	}
	return err, retry.CommitOutcome(err) == retry.OutcomeUnknown
}

// notSent reports whether a COMMIT's error says it never left the process:
// database/sql's refusal of a transaction its context already ended, or a
// driver's error that says nothing was sent because the context was done
// (pgx's, with SafeToRetry). A connection lost during COMMIT is not one.
func notSent(err error) bool {
	if errors.Is(err, sql.ErrTxDone) {
		return true
	}
	var safe interface{ SafeToRetry() bool }
	return errors.As(err, &safe) && safe.SafeToRetry() &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// finish rolls b back with its statement lock.
func (t *txn) finish(b *branch) error {
	b.sem <- struct{}{}
	defer b.release()
	return t.finishLocked(b)
}

// finishLocked rolls b back; sem is held.
func (t *txn) finishLocked(b *branch) error {
	if b.closed {
		return nil
	}
	e := Event{Kind: EventRollback, Source: b.src.name}
	octx, start := t.m.start(t.obsCtx(), e)
	b.closeCursors()
	err := b.tx.Rollback()
	b.closed, b.cursors = true, nil
	e.Err = err
	t.m.end(octx, e, start)
	return err
}

// rollbackAll rolls back every branch. A BEGIN still in flight is
// interrupted first, and a statement in flight is interrupted by the
// database/sql rollback itself.
func (t *txn) rollbackAll(branches []*branch, cause error) error {
	var errs []error
	for _, b := range branches {
		t.mu.Lock()
		began := b.began
		t.mu.Unlock()
		if !began {
			b.interrupt(cause)
		}
		t.await(b)
		if b.err != nil {
			continue
		}
		if err := t.finish(b); err != nil {
			errs = append(errs, fmt.Errorf("uow: rollback %q: %w", b.src.name, err))
		}
	}
	return errors.Join(errs...)
}

// end ends the root unit, releases what it holds, reports its outcome and
// runs the hooks of phase ("" for none).
func (u *Unit) end(s state, cause error, phase string, outcome Outcome, err error) {
	t := u.t
	t.mu.Lock()
	var hooks []Hook
	switch phase {
	case phaseAfterCommit:
		hooks = u.afterCommit
	case phaseAfterRollback:
		hooks = u.afterRollback
	}
	// Nested scopes still open (the root's context ended, or the root was
	// finished first) end with the root: their hooks, innermost first,
	// run before the root's.
	var open []Hook
	for i := len(t.nested) - 1; i >= 0; i-- {
		n := t.nested[i]
		if n.state == stateActive || n.state == stateFinishing {
			n.state = s
			switch phase {
			case phaseAfterCommit:
				open = append(open, n.afterCommit...)
			case phaseAfterRollback:
				open = append(open, n.afterRollback...)
			}
		}
	}
	if len(open) > 0 {
		hooks = append(open, hooks...)
	}
	t.nested = nil
	pinned := t.pinned
	t.pinned = nil
	stop := t.stop
	branches := t.branches
	var report *Event
	unitStart := t.unitStart
	if t.started {
		report = &Event{Kind: EventUnit, Isolation: t.opts.isolation, ReadOnly: t.opts.readOnly,
			Attempt: t.opts.attempt, Scopes: t.scopes, Outcome: outcome, Err: err}
		for _, b := range branches {
			report.Sources = append(report.Sources, b.src.name)
		}
	}
	t.mu.Unlock()
	if report != nil {
		t.m.end(t.obsCtx(), *report, unitStart)
	}
	if stop != nil {
		stop()
	}
	for _, b := range branches {
		b.interrupt(nil) // releases the context; the transaction is over
	}
	releasePinned(pinned)
	// Everything is released and, under the HTTP middleware, the hooks are
	// queued before the unit is seen to be over: a Commit or Rollback
	// waiting in another goroutine (the middleware's, once the unit's
	// context ended) returns only then, and finds them.
	queued := bridge.HookQueueFrom(u.ctx) != nil
	if queued {
		u.runHooks(phase, hooks)
	}
	t.mu.Lock()
	u.state, u.doneCause = s, cause
	if t.over != nil {
		close(t.over)
	}
	t.mu.Unlock()
	if !queued {
		u.runHooks(phase, hooks)
	}
}

func (u *Unit) commitJoined() error {
	b := u.boundary()
	u.t.mu.Lock()
	defer u.t.mu.Unlock()
	if err := u.activeLocked(); err != nil {
		return err
	}
	u.state = stateCommitted
	if u.rollbackOnly != nil {
		return fmt.Errorf("%w: %w", ErrRollbackOnly, u.rollbackOnly)
	}
	if err := u.ctx.Err(); err != nil {
		cause := fmt.Errorf("uow: commit: %w", context.Cause(u.ctx))
		b.failLocked(cause)
		return cause
	}
	return nil
}

// Rollback abandons the unit's work. It is a no-op on a finished unit, so
// defer u.Rollback() right after Begin is the idiom.
//
// The root unit rolls back every source and runs the AfterRollback hooks. A
// joined unit marks the outer unit rollback-only (its work cannot be undone
// alone). A nested unit rolls back to its savepoint, discards its AfterCommit
// hooks and runs its AfterRollback hooks; the outer unit goes on.
func (u *Unit) Rollback() error { return u.rollback(nil) }

// rollback is Rollback, with why the work is abandoned (the error Do's
// callback returned), for the Observer.
func (u *Unit) rollback(cause error) error {
	if u == nil || u.err != nil {
		return nil
	}
	defer u.cancelTimeout()
	t := u.t
	t.mu.Lock()
	if u.activeLocked() != nil {
		t.awaitOver()
		return nil
	}
	switch u.kind {
	case kindJoined:
		u.state = stateRolledBack
		u.parent.failLocked(errJoinedRolledBack)
		t.mu.Unlock()
		return nil
	case kindNested:
		return u.rollbackNested() // unlocks
	}
	u.state = stateFinishing
	branches := t.branches
	t.mu.Unlock()
	err := t.rollbackAll(branches, errRolledBack)
	reason := err
	if cause != nil {
		reason = errors.Join(cause, err) // cause alone when err is nil
		if err == nil {
			reason = cause
		}
	}
	u.end(stateRolledBack, nil, phaseAfterRollback, OutcomeRolledBack, reason)
	return err
}

var errRolledBack = errors.New("uow: rolled back")

// abort rolls the root unit back because its context ended. When a COMMIT
// is in flight it interrupts it instead: the committing goroutine reports
// the outcome.
func (t *txn) abort() {
	u := t.root
	cause := context.Cause(t.ctx)
	t.mu.Lock()
	t.aborted = true
	if u.state != stateActive {
		// Commit or Rollback is under way: interrupt what it waits for (a
		// COMMIT in flight, a BEGIN another goroutine started) and let it
		// report.
		var stop []*branch
		if t.committing != nil {
			stop = append(stop, t.committing)
		}
		for _, b := range t.branches {
			if !b.began {
				stop = append(stop, b)
			}
		}
		t.mu.Unlock()
		for _, b := range stop {
			b.interrupt(cause)
		}
		return
	}
	u.state = stateFinishing
	branches := t.branches
	t.mu.Unlock()
	// rollbackAll interrupts a BEGIN in flight; a statement in flight ends
	// with the context it runs on (see bind); begun transactions are
	// rolled back synchronously, so their connections are back in the pool
	// when the unit is over.
	_ = t.rollbackAll(branches, cause) // each source's failure went to the Observer
	u.end(stateRolledBack, cause, phaseAfterRollback, OutcomeRolledBack, cause)
}
