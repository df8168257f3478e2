package uow

import (
	"context"
	"errors"
	"fmt"

	"github.com/uowkit/uowkit/internal/bridge"
)

// This file holds after-commit and after-rollback hooks: their
// registration on the scope whose outcome they follow, and how they run.

// Hook is a callback run after a unit's outcome is final. Its context carries
// the values of the context the unit was begun with, but not its
// cancellation: hooks run after the request may have ended. Under the HTTP
// middleware, hooks run once the response has been written, on a context
// with a deadline of their own (the middleware's HookTimeout).
type Hook func(ctx context.Context) error

const (
	phaseAfterCommit   = "after-commit"
	phaseAfterRollback = "after-rollback"
)

// AfterCommit registers fn to run once the unit's work is durably committed:
// after the root unit commits every source. Hooks of a nested unit that
// rolls back are discarded. Hooks run in registration order, synchronously
// at the end of the root unit's Commit (or, under the HTTP middleware, after
// the response); an error or panic in one is reported to the Observer as a
// *HookError and does not stop the others, nor change the outcome.
func (u *Unit) AfterCommit(fn Hook) error { return u.addHook(fn, true) }

// AfterRollback registers fn to run once the unit's work is rolled back: when
// the root unit rolls back (its COMMIT failed, on the only source or on the
// first, counts), or when the nested unit it was registered in rolls back to
// its savepoint.
//
// Neither AfterCommit nor AfterRollback hooks run when the commit was partial
// (ErrPartialCommit) or its outcome is unknown (ErrCommitUnknown): some of
// the work is, or may be, durable, so a compensating action could undo
// committed work. Commit's *CommitError tells the caller which source is in
// which state.
func (u *Unit) AfterRollback(fn Hook) error { return u.addHook(fn, false) }

var errNilHook = errors.New("uow: nil hook")

func (u *Unit) addHook(fn Hook, commit bool) error {
	if u == nil {
		return ErrNoUnit
	}
	if fn == nil {
		return errNilHook
	}
	u.t.mu.Lock()
	defer u.t.mu.Unlock()
	if err := u.activeLocked(); err != nil {
		return err
	}
	b := u.boundary()
	if commit {
		b.afterCommit = append(b.afterCommit, fn)
	} else {
		b.afterRollback = append(b.afterRollback, fn)
	}
	return nil
}

// AfterCommit registers fn with the unit active in ctx; see Unit.AfterCommit.
// Without an active unit it returns ErrNoUnit: the work it follows is not in a
// transaction, so "after commit" has no meaning.
func AfterCommit(ctx context.Context, fn Hook) error { return FromContext(ctx).AfterCommit(fn) }

// AfterRollback registers fn with the unit active in ctx; see
// Unit.AfterRollback. Without an active unit it returns ErrNoUnit.
func AfterRollback(ctx context.Context, fn Hook) error { return FromContext(ctx).AfterRollback(fn) }

// runHooks runs hooks in order, containing errors and panics; or, when the
// HTTP middleware put a queue on the unit's context, queues them to run once
// the response has gone.
func (u *Unit) runHooks(phase string, hooks []Hook) {
	if len(hooks) == 0 {
		return
	}
	if q := bridge.HookQueueFrom(u.ctx); q != nil {
		q.Add(func(ctx context.Context) { u.runHooksNow(ctx, phase, hooks) })
		return
	}
	u.runHooksNow(context.WithoutCancel(u.ctx), phase, hooks)
}

func (u *Unit) runHooksNow(ctx context.Context, phase string, hooks []Hook) {
	for i, h := range hooks {
		if herr := runHook(ctx, phase, i, h); herr != nil {
			u.m.observe(ctx, Event{Kind: EventHookError, Err: herr})
		}
	}
}

func runHook(ctx context.Context, phase string, i int, h Hook) (herr *HookError) {
	defer func() {
		if p := recover(); p != nil {
			herr = &HookError{Phase: phase, Index: i, Panic: p, Err: fmt.Errorf("panic: %v", p)}
		}
	}()
	if err := h(ctx); err != nil {
		return &HookError{Phase: phase, Index: i, Err: err}
	}
	return nil
}
