package uow

import "context"

// This file holds cancellation: the watcher that aborts a root unit when
// its context ends, and the binding of a statement's context to its unit's.

// watchLocked makes the root unit roll back when its context ends, once there
// is something to release; t.mu is held.
func (t *txn) watchLocked() {
	if t.stop != nil || t.ctx.Done() == nil {
		return
	}
	t.stop = context.AfterFunc(t.ctx, t.abort)
}

func noop() {}

// bind returns a context for one statement that is also cancelled when the
// unit's context ends (its Timeout, its caller's cancellation), for
// statements whose context does not descend from the unit: a repository bound
// explicitly and called with another context. A cursor's context must outlive
// the call (database/sql closes the rows when it ends), so for a cursor the
// link is left to end with the unit's context.
func (u *Unit) bind(ctx context.Context, cursor bool) (context.Context, func()) {
	if ctx == u.ctx || u.ctx.Done() == nil {
		return ctx, noop // the unit's own context, or one that never ends
	}
	if s := FromContext(ctx); s != nil && s.t == u.t {
		return ctx, noop // already descends from the unit
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(u.ctx, func() { cancel(context.Cause(u.ctx)) })
	if cursor {
		return ctx, noop
	}
	return ctx, func() { stop(); cancel(nil) }
}
