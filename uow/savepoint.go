package uow

import (
	"context"
	"errors"
	"fmt"
)

// This file holds nested units: savepoints, created lazily on the sources a
// nested unit uses, released by its Commit and rolled back to by its
// Rollback. A savepoint statement runs with its branch's statement lock held
// and never under the unit's lock.

// prepare checks, with b's statement lock held, that u may still run a
// statement, and creates on b the savepoints of the nested scopes enclosing
// u that b does not have yet, outermost first.
func (u *Unit) prepare(ctx context.Context, b *branch) error {
	t := u.t
	t.mu.Lock()
	if err := u.activeLocked(); err != nil {
		t.mu.Unlock()
		return err
	}
	var chain []*Unit // nested scopes, innermost first
	for s := u; s != nil; s = s.parent {
		if s.kind == kindNested {
			if s.savepoint == "" {
				t.spSeq++
				s.savepoint = fmt.Sprintf("uow_sp_%d", t.spSeq)
			}
			chain = append(chain, s)
		}
	}
	t.mu.Unlock()
	var outer *Unit
	for i := len(chain) - 1; i >= 0; i-- {
		n := chain[i]
		if b.has(n) {
			outer = n
			continue
		}
		if b.top() != outer {
			return ErrNestedOverlap
		}
		if err := t.savepointStmt(ctx, b, "SAVEPOINT", n); err != nil {
			// The savepoint does not exist, and PostgreSQL has aborted the
			// whole transaction: nothing short of the enclosing scope's
			// rollback undoes that.
			err = fmt.Errorf("uow: savepoint on %q: %w", b.src.name, err)
			t.mu.Lock()
			n.failLocked(err)
			n.parent.failLocked(err)
			t.mu.Unlock()
			return err
		}
		b.sp = append(b.sp, n)
		t.mu.Lock()
		n.spBranches = append(n.spBranches, b)
		t.mu.Unlock()
		outer = n
	}
	return nil
}

// has reports whether n's savepoint exists on b; sem is held.
func (b *branch) has(n *Unit) bool {
	for _, x := range b.sp {
		if x == n {
			return true
		}
	}
	return false
}

func (b *branch) top() *Unit {
	if len(b.sp) == 0 {
		return nil
	}
	return b.sp[len(b.sp)-1]
}

// pop removes n, and any savepoint above it, from b's stack; sem is held.
func (b *branch) pop(n *Unit) {
	for i := len(b.sp) - 1; i >= 0; i-- {
		if b.sp[i] == n {
			b.sp = b.sp[:i]
			return
		}
	}
}

// savepointStmt runs stmt (SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO
// SAVEPOINT) for n's savepoint on b, reporting it to the Observer; b's
// statement lock is held.
func (t *txn) savepointStmt(ctx context.Context, b *branch, stmt string, n *Unit) error {
	e := Event{Kind: EventSavepoint, Source: b.src.name, Statement: stmt}
	octx, start := t.m.start(t.obsCtx(), e)
	e.Err = b.tx.Exec(ctx, stmt+" "+n.savepoint)
	t.m.end(octx, e, start)
	return e.Err
}

// spExec runs savepoint statements for n on b, with b's statement lock.
func (t *txn) spExec(ctx context.Context, b *branch, n *Unit, stmts ...string) error {
	b.sem <- struct{}{}
	defer b.release()
	defer b.pop(n)
	if b.closed {
		return ErrDone
	}
	for _, s := range stmts {
		if err := t.savepointStmt(ctx, b, s, n); err != nil {
			return err
		}
	}
	return nil
}

func (u *Unit) commitNested() error {
	t := u.t
	t.mu.Lock()
	if err := u.activeLocked(); err != nil {
		t.mu.Unlock()
		return err
	}
	var cause error
	switch {
	case u.rollbackOnly != nil:
		cause = fmt.Errorf("%w: %w", ErrRollbackOnly, u.rollbackOnly)
	case u.ctx.Err() != nil:
		cause = fmt.Errorf("uow: commit: %w", context.Cause(u.ctx))
	}
	if cause != nil {
		return errors.Join(cause, u.rollbackNested()) // unlocks
	}
	u.state = stateFinishing
	branches := u.spBranches
	t.mu.Unlock()
	// On the unit's context (with what the Observer put there): an abort
	// of the unit interrupts it.
	ctx := t.obsCtx()
	for _, b := range branches {
		if err := t.spExec(ctx, b, u, "RELEASE SAVEPOINT"); err != nil {
			err = fmt.Errorf("uow: release savepoint on %q: %w", b.src.name, err)
			t.mu.Lock()
			u.parent.failLocked(err)
			u.state = stateRolledBack
			// The enclosing unit will roll back, this work with it: its
			// after-rollback hooks follow the enclosing unit's.
			p := u.parent.boundary()
			p.afterRollback = append(p.afterRollback, u.afterRollback...)
			t.mu.Unlock()
			return err
		}
	}
	t.mu.Lock()
	u.state = stateCommitted
	p := u.parent.boundary()
	p.afterCommit = append(p.afterCommit, u.afterCommit...)
	p.afterRollback = append(p.afterRollback, u.afterRollback...)
	t.mu.Unlock()
	return nil
}

// rollbackNested rolls u's savepoints back and runs its AfterRollback hooks.
// It is called with t.mu held and releases it. A failure to roll back to the
// savepoint leaves the transaction unusable, so it marks the enclosing unit
// rollback-only.
func (u *Unit) rollbackNested() error {
	t := u.t
	u.state = stateFinishing
	branches := u.spBranches
	t.mu.Unlock()
	ctx := t.obsCtx() // an abort of the unit interrupts it
	var errs []error
	for _, b := range branches {
		if err := t.spExec(ctx, b, u, "ROLLBACK TO SAVEPOINT", "RELEASE SAVEPOINT"); err != nil {
			errs = append(errs, fmt.Errorf("uow: rollback to savepoint on %q: %w", b.src.name, err))
		}
	}
	t.mu.Lock()
	for _, err := range errs {
		u.parent.failLocked(err)
	}
	u.state = stateRolledBack
	hooks := u.afterRollback
	t.mu.Unlock()
	u.runHooks(phaseAfterRollback, hooks)
	return errors.Join(errs...)
}
