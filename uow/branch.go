package uow

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/uowkit/uowkit/internal/seam"
)

// This file holds a unit's branches: one lazily begun transaction per
// source. A branch begins once; concurrent first users wait for that one
// BEGIN (as long as their context lets them), not for a unit-wide lock.
// Statements on a branch are serialised by its sem, the one lock held
// across a round trip, and only by the users of that branch.

// branch is one source's transaction inside a txn.
type branch struct {
	src    *source
	ctx    context.Context // the transaction's life; cancelled to interrupt it
	cancel context.CancelCauseFunc
	sem    chan struct{} // held while a statement runs on tx

	// Guarded by txn.mu until began; then read-only.
	began bool
	ready chan struct{} // made by the first waiter, closed once began
	tx    seam.Tx
	err   error // why BEGIN failed

	// Guarded by sem.
	closed  bool
	cursors []any   // database/sql cursors (see sqlCursor) and seam.Cursors
	sp      []*Unit // nested units whose savepoint is open here, innermost last
}

// sqlCursor is an open *sql.Rows, *sqlx.Rows or *sqlx.Row: Columns fails
// once it is closed. database/sql closes them itself when the transaction
// ends.
type sqlCursor interface{ Columns() ([]string, error) }

// BeginError reports that a source's transaction could not be begun. No
// statement of the unit ran on that source.
type BeginError struct {
	// Source names the source.
	Source string
	// Err is the driver's error.
	Err error
}

// Error describes the failure.
func (e *BeginError) Error() string { return fmt.Sprintf("uow: begin %q: %v", e.Source, e.Err) }

// Unwrap returns the driver's error.
func (e *BeginError) Unwrap() error { return e.Err }

// RetrySafe reports whether re-running the unit is safe and worthwhile: the
// connection failed before anything ran (the unit already tried other
// connections of the pool). Package retry honours it.
func (e *BeginError) RetrySafe() bool { return connectionLost(e.Err) }

// branchOn returns u's transaction on s, beginning it on first use, or
// waiting for a BEGIN another goroutine has in flight.
func (u *Unit) branchOn(ctx context.Context, s *source) (*branch, error) {
	t := u.t
	t.mu.Lock()
	if err := u.activeLocked(); err != nil {
		t.mu.Unlock()
		return nil, err
	}
	if u.ctx.Err() != nil {
		t.mu.Unlock()
		return nil, fmt.Errorf("uow: %w", context.Cause(u.ctx))
	}
	b := t.branchOn(s)
	if b == nil && !t.started && t.m.observer != nil {
		// The unit's first use: report it before its first BEGIN, so that
		// the BEGIN and every statement run under what the Observer
		// returns (a tracer's span).
		t.started = true
		t.mu.Unlock()
		t.startUnit()
		return u.branchOn(ctx, s)
	}
	if b == nil {
		b = t.newBranchLocked(s)
		t.watchLocked()
		t.mu.Unlock()
		t.begin(b)
		return b, b.err
	}
	if b.began {
		t.mu.Unlock()
		return b, b.err
	}
	ready := b.readyLocked()
	t.mu.Unlock()
	select {
	case <-ready:
		return b, b.err
	case <-ctx.Done():
		return nil, fmt.Errorf("uow: waiting for BEGIN on %q: %w", s.name, context.Cause(ctx))
	}
}

// startUnit reports the unit's first use to the Observer and keeps the
// context it returns, which the unit's context then answers values from.
func (t *txn) startUnit() {
	ctx, start := t.m.start(t.ctx, Event{Kind: EventUnit, Isolation: t.opts.isolation, ReadOnly: t.opts.readOnly, Attempt: t.opts.attempt})
	t.mu.Lock()
	t.unitStart = start
	t.mu.Unlock()
	t.obs.p.Store(&ctx)
}

// branchOn returns t's branch on s, or nil; t.mu is held.
func (t *txn) branchOn(s *source) *branch {
	for _, b := range t.branches {
		if b.src == s {
			return b
		}
	}
	return nil
}

// newBranchLocked registers a branch on s, to be begun; t.mu is held.
func (t *txn) newBranchLocked(s *source) *branch {
	var b *branch
	if len(t.branches) == 0 {
		b = &t.first
	} else {
		b = new(branch)
	}
	b.src, b.sem = s, make(chan struct{}, 1)
	if t.ctx.Done() == nil {
		// The unit's context never ends: nothing will ever interrupt the
		// transaction, so it can run on that context as it is.
		b.ctx = t.obsCtx()
	} else {
		b.ctx, b.cancel = context.WithCancelCause(context.WithoutCancel(t.obsCtx()))
	}
	t.branches = append(t.branches, b)
	return b
}

// interrupt cancels b's context: a BEGIN or COMMIT in flight on it is
// interrupted, and database/sql rolls back the transaction on its own.
func (b *branch) interrupt(cause error) {
	if b.cancel != nil {
		b.cancel(cause)
	}
}

// readyLocked returns the channel closed once b has begun.
func (b *branch) readyLocked() chan struct{} {
	if b.ready == nil {
		b.ready = make(chan struct{})
		if b.began {
			close(b.ready)
		}
	}
	return b.ready
}

// await waits until b's BEGIN has finished, however it ended.
func (t *txn) await(b *branch) {
	t.mu.Lock()
	if b.began {
		t.mu.Unlock()
		return
	}
	ready := b.readyLocked()
	t.mu.Unlock()
	<-ready
}

// begin runs b's BEGIN, outside the unit's lock. The wait for a pool
// connection and the BEGIN honour the unit's context: when it ends, the
// watcher cancels b.ctx. A BEGIN that fails on a broken pooled connection,
// before anything ran, is tried again on another one.
func (t *txn) begin(b *branch) {
	o := seam.TxOptions{Isolation: t.opts.isolation, ReadOnly: t.opts.readOnly}
	var tx seam.Tx
	var err error
	backend, rep := t.beginBackend(b, nil)
	for attempt, attempts := 1, 1; ; attempt++ {
		e := Event{Kind: EventBegin, Source: b.src.name}
		if rep != nil {
			e.Replica = rep.name
		}
		octx, start := t.m.start(t.obsCtx(), e)
		tx, err = backend.Begin(b.ctx, o)
		e.Err = err
		t.m.end(octx, e, start)
		if err == nil || !connectionLost(err) || b.ctx.Err() != nil {
			break
		}
		if rep != nil {
			// The replica cannot be reached: skip it for a while, and
			// begin on another one, or on the primary.
			rep.fail(b.src.replicas.cooldown)
			backend, rep = t.beginBackend(b, rep)
			attempt, attempts = 0, 1
			continue
		}
		if attempt == 1 {
			attempts = 1 + backend.BeginAttempts()
		}
		if attempt >= attempts {
			break
		}
	}
	if err == nil {
		if set := t.opts.settings(); set != "" {
			if err = tx.Exec(b.ctx, set); err != nil {
				err = fmt.Errorf("uow: setting %s: %w", set, err)
				_ = tx.Rollback()
				tx = nil
			}
		}
	}
	if err != nil {
		if b.ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(b.ctx))
		}
		err = &BeginError{Source: b.src.name, Err: err}
	}
	t.mu.Lock()
	b.tx, b.err, b.began = tx, err, true
	if b.ready != nil {
		close(b.ready)
	}
	t.mu.Unlock()
}

// acquire takes b's statement lock, waiting no longer than ctx allows.
func (b *branch) acquire(ctx context.Context) error {
	select {
	case b.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case b.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("uow: waiting for the transaction on %q: %w", b.src.name, context.Cause(ctx))
	}
}

func (b *branch) release() { <-b.sem }

func cursorOpen(c any) bool {
	switch c := c.(type) {
	case seam.Cursor:
		return c.Open()
	case sqlCursor:
		_, err := c.Columns()
		return err == nil
	}
	return false
}

// closeCursors closes the cursors still open on b before its transaction
// ends; sem is held. database/sql closes its own; a driver's (pgx's) must
// be closed first, or its connection is busy when COMMIT or ROLLBACK comes.
func (b *branch) closeCursors() {
	for _, c := range b.cursors {
		if c, ok := c.(seam.Cursor); ok && c.Open() {
			c.Close()
		}
	}
}

// usable reports whether a statement may run on b now; sem is held.
func (b *branch) usable() error {
	if b.closed {
		return ErrDone
	}
	open := b.cursors[:0]
	for _, r := range b.cursors {
		if cursorOpen(r) {
			open = append(open, r)
		}
	}
	clear(b.cursors[len(open):])
	b.cursors = open
	if len(open) > 0 {
		return ErrBusy
	}
	return nil
}

// settings returns the statement that applies c's server-side settings to a
// transaction just begun (set_config(..., true): they end with it), or "".
func (c config) settings() string {
	if c.stmtTimeout == 0 && c.lockTimeout == 0 {
		return ""
	}
	var sets []string
	if c.stmtTimeout > 0 {
		sets = append(sets, "set_config('statement_timeout', '"+strconv.FormatInt(c.stmtTimeout.Milliseconds(), 10)+"ms', true)")
	}
	if c.lockTimeout > 0 {
		sets = append(sets, "set_config('lock_timeout', '"+strconv.FormatInt(c.lockTimeout.Milliseconds(), 10)+"ms', true)")
	}
	return "SELECT " + strings.Join(sets, ", ")
}
