package uow

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// ErrRollbackRequested is the cause recorded by SetRollbackOnly: Commit then
// rolls back and returns an error matching both ErrRollbackOnly and
// ErrRollbackRequested, so that callers (the HTTP middleware) can tell a
// deliberate rollback from a failure.
var ErrRollbackRequested = errors.New("uow: rollback requested")

// errJoinedRolledBack marks the outer unit when a joined unit rolls back.
var errJoinedRolledBack = errors.New("uow: a joined unit rolled back")

type kind uint8

const (
	kindRoot kind = iota
	kindJoined
	kindNested
)

type state uint8

const (
	stateActive state = iota
	stateCommitted
	stateRolledBack
)

// Hook is a callback run after a unit's outcome is final. Its context carries
// the values of the context the unit was begun with, but not its cancellation:
// hooks run after the request may have ended.
type Hook func(ctx context.Context) error

// Unit is a unit of work: a lazily begun set of transactions, one per source
// it uses, that commit or roll back together. A Unit is one scope: the
// outermost (root) unit owns the transactions; a joined unit participates in
// its outer unit; a nested unit is a savepoint. Units are safe for concurrent
// use by the goroutines of one request.
type Unit struct {
	m      *Manager
	t      *txn
	parent *Unit
	kind   kind
	opts   config
	ctx    context.Context
	cancel context.CancelFunc
	err    error // configuration error: the unit reports it on every use

	// Guarded by t.mu.
	state         state
	doneCause     error // why the unit was rolled back without Rollback
	rollbackOnly  error
	afterCommit   []Hook
	afterRollback []Hook
	savepoint     string  // kindNested: savepoint name, assigned on first use
	spConns       []*conn // kindNested: connections where the savepoint exists
}

// txn is the state shared by all scopes of one root unit.
type txn struct {
	mu     sync.Mutex
	m      *Manager
	opts   config
	ctx    context.Context // the root's context: cancellation ends the unit
	root   *Unit
	conns  []*conn // in registration order
	byDB   map[*sqlx.DB]*conn
	pinned []*sqlx.Conn
	spSeq  int
	stop   func() bool // stops the cancellation watcher
	// pending holds events recorded under mu, delivered to the Observer by
	// unlock once mu is released: an Observer never runs under the lock.
	pending []Event
}

// emit records e for the Observer; mu must be held.
func (t *txn) emit(e Event) {
	if t.m.observer != nil {
		t.pending = append(t.pending, e)
	}
}

// unlock releases mu, then delivers the events recorded under it.
func (t *txn) unlock() {
	pending := t.pending
	t.pending = nil
	t.mu.Unlock()
	for _, e := range pending {
		t.m.observe(t.ctx, e)
	}
}

// conn is one source's transaction inside a txn.
type conn struct {
	name    string
	db      *sqlx.DB
	mu      sync.Mutex // serialises statements on the transaction
	tx      *sqlx.Tx
	closed  bool
	cursors []cursor
	sp      []*Unit // nested units whose savepoint is open here, innermost last
}

// cursor is an open *sql.Rows, *sqlx.Rows or *sqlx.Row: Columns fails once
// it is closed.
type cursor interface{ Columns() ([]string, error) }

type unitKey struct{}

func (unitKey) String() string { return "uow.unit" }

// From returns the unit active in ctx, or nil.
func From(ctx context.Context) *Unit {
	u, _ := ctx.Value(unitKey{}).(*Unit)
	return u
}

// Err returns the configuration error the unit was begun with (ErrNoUnit for
// Mandatory propagation without an active unit, ErrIncompatible), or nil.
func (u *Unit) Err() error { return u.err }

// Context returns the context Begin returned: it carries the unit.
func (u *Unit) Context() context.Context { return u.ctx }

// boundary returns the scope whose outcome u's work shares: u itself unless u
// is joined, then the nearest enclosing root or nested unit.
func (u *Unit) boundary() *Unit {
	for u.kind == kindJoined {
		u = u.parent
	}
	return u
}

// activeLocked returns nil when u and every enclosing scope are active.
func (u *Unit) activeLocked() error {
	if u.err != nil {
		return u.err
	}
	for s := u; s != nil; s = s.parent {
		if s.state != stateActive {
			return s.doneErr()
		}
	}
	return nil
}

func (u *Unit) doneErr() error {
	if u.err != nil {
		return u.err
	}
	if u.doneCause != nil {
		return fmt.Errorf("%w (rolled back: %w)", ErrDone, u.doneCause)
	}
	return ErrDone
}

// failLocked marks u, and the joined scopes up to its boundary, rollback-only.
func (u *Unit) failLocked(cause error) {
	for s := u; s != nil; s = s.parent {
		if s.rollbackOnly == nil {
			s.rollbackOnly = cause
		}
		if s.kind != kindJoined {
			return
		}
	}
}

// SetRollbackOnly makes the unit roll back when it is finished, even on
// Commit; Commit then returns an error matching ErrRollbackOnly and
// ErrRollbackRequested. In a joined unit it marks the outer unit.
func (u *Unit) SetRollbackOnly() error {
	u.t.mu.Lock()
	defer u.t.unlock()
	if err := u.activeLocked(); err != nil {
		return err
	}
	u.failLocked(ErrRollbackRequested)
	return nil
}

// RollbackOnly returns why the unit will roll back on Commit, or nil.
func (u *Unit) RollbackOnly() error {
	u.t.mu.Lock()
	defer u.t.unlock()
	return u.rollbackOnly
}

// AfterCommit registers fn to run once the unit's work is durably committed:
// after the root unit commits every source. Hooks of a nested unit that rolls
// back are discarded. Hooks run in registration order; an error or panic in
// one is reported to the Observer as a *HookError and does not stop the
// others, nor change the outcome.
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

func (u *Unit) addHook(fn Hook, commit bool) error {
	if fn == nil {
		return errors.New("uow: nil hook")
	}
	u.t.mu.Lock()
	defer u.t.unlock()
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

// DB returns the lazy handle of the default source for repositories bound
// explicitly to this unit.
func (u *Unit) DB() *Handle { return u.Source(DefaultSource) }

// Source returns the lazy handle of a named source. An unknown name gives a
// handle whose statements fail with ErrUnknownSource.
func (u *Unit) Source(name string) *Handle {
	i, ok := u.m.byName[name]
	if !ok {
		return &Handle{u: u, err: fmt.Errorf("%w: %q", ErrUnknownSource, name)}
	}
	return &Handle{u: u, db: u.m.sources[i].db}
}

// On returns the lazy handle of db, which need not be one of the manager's
// sources: the unit spans every database it is used on.
func (u *Unit) On(db *sqlx.DB) *Handle {
	if db == nil {
		return &Handle{u: u, err: fmt.Errorf("%w: nil database", ErrUnknownSource)}
	}
	return &Handle{u: u, db: db}
}

// Conn returns a dedicated connection of db (the default source when db is
// nil), outside the unit's transactions, for session-level work such as
// advisory locks or SET. It is closed, not returned to the pool, when the root
// unit finishes, so no session state leaks to other users of the pool.
func (u *Unit) Conn(ctx context.Context, db *sqlx.DB) (*sqlx.Conn, error) {
	if db == nil {
		db = u.m.DB()
		if db == nil {
			return nil, fmt.Errorf("%w: %q", ErrUnknownSource, DefaultSource)
		}
	}
	t := u.t
	t.mu.Lock()
	defer t.unlock()
	if err := u.activeLocked(); err != nil {
		return nil, err
	}
	c, err := db.Connx(ctx)
	if err != nil {
		return nil, err
	}
	t.pinned = append(t.pinned, c)
	t.watchLocked()
	return c, nil
}

// conn returns u's transaction on db, beginning it and creating the savepoints
// of u's nested scopes on first use.
func (u *Unit) conn(ctx context.Context, db *sqlx.DB) (*conn, error) {
	t := u.t
	t.mu.Lock()
	defer t.unlock()
	if err := u.activeLocked(); err != nil {
		return nil, err
	}
	if err := u.ctx.Err(); err != nil {
		return nil, fmt.Errorf("uow: %w", context.Cause(u.ctx))
	}
	c := t.byDB[db]
	if c == nil {
		var err error
		if c, err = t.beginLocked(db); err != nil {
			return nil, err
		}
	}
	if err := u.savepointsLocked(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

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

func (t *txn) beginLocked(db *sqlx.DB) (*conn, error) {
	name := t.m.sourceName(db, len(t.conns))
	start := time.Now()
	tx, err := db.BeginTxx(context.WithoutCancel(t.ctx), &sql.TxOptions{Isolation: t.opts.isolation, ReadOnly: t.opts.readOnly})
	t.emit(Event{Kind: EventBegin, Source: name, Duration: time.Since(start), Err: err})
	if err != nil {
		return nil, &BeginError{Source: name, Err: err}
	}
	c := &conn{name: name, db: db, tx: tx}
	if t.byDB == nil {
		t.byDB = map[*sqlx.DB]*conn{}
	}
	t.byDB[db] = c
	t.conns = append(t.conns, c)
	t.watchLocked()
	return c, nil
}

// watchLocked makes the root unit roll back when its context ends, once there
// is something to release.
func (t *txn) watchLocked() {
	if t.stop != nil || t.ctx.Done() == nil {
		return
	}
	t.stop = context.AfterFunc(t.ctx, func() { t.root.abort(context.Cause(t.ctx)) })
}

// savepointsLocked creates, on c, the savepoints of the nested scopes
// enclosing u that do not have one there yet, outermost first.
func (u *Unit) savepointsLocked(ctx context.Context, c *conn) error {
	var chain []*Unit
	for s := u; s != nil; s = s.parent {
		if s.kind == kindNested {
			chain = append(chain, s)
		}
	}
	var outer *Unit
	for i := len(chain) - 1; i >= 0; i-- {
		n := chain[i]
		if n.hasSavepoint(c) {
			outer = n
			continue
		}
		if top := c.top(); top != outer {
			return ErrNestedOverlap
		}
		if n.savepoint == "" {
			u.t.spSeq++
			n.savepoint = fmt.Sprintf("uow_sp_%d", u.t.spSeq)
		}
		if err := c.exec(ctx, "SAVEPOINT "+n.savepoint); err != nil {
			n.failLocked(err)
			return err
		}
		c.sp = append(c.sp, n)
		n.spConns = append(n.spConns, c)
		outer = n
	}
	return nil
}

func (u *Unit) hasSavepoint(c *conn) bool {
	for _, x := range u.spConns {
		if x == c {
			return true
		}
	}
	return false
}

func (c *conn) top() *Unit {
	if len(c.sp) == 0 {
		return nil
	}
	return c.sp[len(c.sp)-1]
}

// pop removes n, and any savepoint above it, from c's stack.
func (c *conn) pop(n *Unit) {
	for i := len(c.sp) - 1; i >= 0; i-- {
		if c.sp[i] == n {
			c.sp = c.sp[:i]
			return
		}
	}
}

// exec runs a control statement (savepoints) on c.
func (c *conn) exec(ctx context.Context, stmt string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usableLocked(); err != nil {
		return err
	}
	_, err := c.tx.ExecContext(ctx, stmt)
	return err
}

// usableLocked reports whether a statement may run on c now.
func (c *conn) usableLocked() error {
	if c.closed {
		return ErrDone
	}
	open := c.cursors[:0]
	for _, r := range c.cursors {
		if _, err := r.Columns(); err == nil {
			open = append(open, r)
		}
	}
	clear(c.cursors[len(open):])
	c.cursors = open
	if len(open) > 0 {
		return ErrBusy
	}
	return nil
}

// finish commits or rolls back c's transaction.
func (t *txn) finish(c *conn, commit bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	var err error
	kind := EventRollback
	if commit {
		kind = EventCommit
		err = c.tx.Commit()
	} else {
		err = c.tx.Rollback()
		if errors.Is(err, sql.ErrTxDone) || errors.Is(err, driver.ErrBadConn) {
			// database/sql already rolled it back, or the connection broke
			// (a cancelled statement makes lib/pq drop it): database/sql
			// closes it, and the server rolls back with the session.
			err = nil
		}
	}
	c.closed = true
	c.cursors = nil
	t.emit(Event{Kind: kind, Source: c.name, Duration: time.Since(start), Err: err})
	return err
}

// rollbackAllLocked rolls back every transaction of t.
func (t *txn) rollbackAllLocked() error {
	var errs []error
	for _, c := range t.conns {
		if c.closed {
			continue
		}
		if err := t.finish(c, false); err != nil {
			errs = append(errs, fmt.Errorf("uow: rollback %q: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// commitAllLocked commits every transaction of t in registration order; on a
// failure it rolls back the rest and reports each source's fate.
func (t *txn) commitAllLocked() error {
	var committed []string
	for i, c := range t.conns {
		err := t.finish(c, true)
		if err == nil {
			committed = append(committed, c.name)
			continue
		}
		ce := &CommitError{Committed: committed, Failed: c.name, Err: err, Unknown: commitOutcomeUnknown(err)}
		for _, r := range t.conns[i+1:] {
			_ = t.finish(r, false)
			ce.RolledBack = append(ce.RolledBack, r.name)
		}
		return ce
	}
	return nil
}

// endLocked releases what the root unit holds besides its transactions.
func (t *txn) endLocked() {
	if t.stop != nil {
		t.stop()
	}
	for _, c := range t.pinned {
		// Returning ErrBadConn from Raw discards the connection instead of
		// pooling it, so advisory locks and SET never outlive the unit.
		_ = c.Raw(func(any) error { return driver.ErrBadConn })
		_ = c.Close()
	}
	t.pinned = nil
}

// Commit finishes the unit successfully.
//
// For the root unit it commits every source in the order they were first
// used, then runs the AfterCommit hooks. If one source's COMMIT fails, the
// sources after it are rolled back and a *CommitError says exactly which
// committed, failed and rolled back; the AfterRollback hooks run only if
// nothing committed and the outcome is known (see AfterRollback). If the unit is rollback-only, or its
// context has ended, everything is rolled back and the error says why. A
// unit that never used a source commits with no database round trip.
//
// For a joined unit, Commit only ends its participation: the outer unit
// commits. For a nested unit it releases the savepoint; its hooks move to the
// enclosing unit.
//
// Commit on a finished unit returns ErrDone.
func (u *Unit) Commit() error {
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
		defer t.unlock()
		return u.doneErr()
	}
	var cause error
	switch {
	case t.ctx.Err() != nil:
		cause = fmt.Errorf("uow: commit: %w", context.Cause(t.ctx))
	case u.rollbackOnly != nil:
		cause = fmt.Errorf("%w: %w", ErrRollbackOnly, u.rollbackOnly)
	}
	if cause != nil {
		rbErr := t.rollbackAllLocked()
		hooks := u.endLocked(stateRolledBack, nil)
		t.unlock()
		u.runHooks("after-rollback", hooks)
		return errors.Join(cause, rbErr)
	}
	err := t.commitAllLocked()
	var hooks []Hook
	phase := "after-commit"
	switch {
	case err == nil:
		hooks = u.endLocked(stateCommitted, nil)
	case ambiguous(err):
		// Some of the work is, or may be, durable: neither "it committed"
		// nor "it rolled back" is true, so no hook runs. The caller has the
		// *CommitError that says which source is in which state.
		_ = u.endLocked(stateRolledBack, nil)
	default:
		hooks, phase = u.endLocked(stateRolledBack, nil), "after-rollback"
	}
	t.unlock()
	u.runHooks(phase, hooks)
	return err
}

// ambiguous reports whether a failed commit left work possibly durable: a
// partial commit, or a COMMIT whose outcome is unknown.
func ambiguous(err error) bool {
	var ce *CommitError
	return errors.As(err, &ce) && (ce.Unknown || len(ce.Committed) > 0)
}

// endLocked ends the root unit and returns the hooks its outcome runs.
func (u *Unit) endLocked(s state, cause error) []Hook {
	u.state, u.doneCause = s, cause
	u.t.endLocked()
	if s == stateCommitted {
		return u.afterCommit
	}
	return u.afterRollback
}

func (u *Unit) commitJoined() error {
	b := u.boundary()
	u.t.mu.Lock()
	defer u.t.unlock()
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

func (u *Unit) commitNested() error {
	t := u.t
	t.mu.Lock()
	if err := u.activeLocked(); err != nil {
		t.unlock()
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
		hooks, err := u.rollbackNestedLocked()
		t.unlock()
		u.runHooks("after-rollback", hooks)
		return errors.Join(cause, err)
	}
	ctx := context.WithoutCancel(u.ctx)
	for _, c := range u.spConns {
		if err := c.exec(ctx, "RELEASE SAVEPOINT "+u.savepoint); err != nil {
			err = fmt.Errorf("uow: release savepoint on %q: %w", c.name, err)
			u.parent.failLocked(err)
			u.state = stateRolledBack
			t.unlock()
			return err
		}
		c.pop(u)
	}
	u.state = stateCommitted
	p := u.parent.boundary()
	p.afterCommit = append(p.afterCommit, u.afterCommit...)
	p.afterRollback = append(p.afterRollback, u.afterRollback...)
	t.unlock()
	return nil
}

// rollbackNestedLocked rolls u's savepoints back and returns the hooks to run.
// A failure to roll back to the savepoint leaves the transaction unusable, so
// it marks the enclosing unit rollback-only.
func (u *Unit) rollbackNestedLocked() ([]Hook, error) {
	ctx := context.WithoutCancel(u.ctx)
	var errs []error
	for _, c := range u.spConns {
		err := c.exec(ctx, "ROLLBACK TO SAVEPOINT "+u.savepoint)
		if err == nil {
			err = c.exec(ctx, "RELEASE SAVEPOINT "+u.savepoint)
		}
		if err != nil {
			err = fmt.Errorf("uow: rollback to savepoint on %q: %w", c.name, err)
			u.parent.failLocked(err)
			errs = append(errs, err)
		}
		c.pop(u)
	}
	u.state = stateRolledBack
	return u.afterRollback, errors.Join(errs...)
}

// Rollback abandons the unit's work. It is a no-op on a finished unit, so
// defer u.Rollback() right after Begin is the idiom.
//
// The root unit rolls back every source and runs the AfterRollback hooks. A
// joined unit marks the outer unit rollback-only (its work cannot be undone
// alone). A nested unit rolls back to its savepoint, discards its AfterCommit
// hooks and runs its AfterRollback hooks; the outer unit goes on.
func (u *Unit) Rollback() error {
	if u.err != nil {
		return nil
	}
	defer u.cancelTimeout()
	t := u.t
	t.mu.Lock()
	if u.activeLocked() != nil {
		t.unlock()
		return nil
	}
	switch u.kind {
	case kindJoined:
		u.state = stateRolledBack
		u.parent.failLocked(errJoinedRolledBack)
		t.unlock()
		return nil
	case kindNested:
		hooks, err := u.rollbackNestedLocked()
		t.unlock()
		u.runHooks("after-rollback", hooks)
		return err
	}
	err := t.rollbackAllLocked()
	hooks := u.endLocked(stateRolledBack, nil)
	t.unlock()
	u.runHooks("after-rollback", hooks)
	return err
}

// abort rolls the root unit back because its context ended.
func (u *Unit) abort(cause error) {
	t := u.t
	t.mu.Lock()
	if u.state != stateActive {
		t.unlock()
		return
	}
	_ = t.rollbackAllLocked() // each source's failure went to the Observer
	hooks := u.endLocked(stateRolledBack, cause)
	t.unlock()
	u.runHooks("after-rollback", hooks)
}

// runHooks runs hooks in order, containing errors and panics.
func (u *Unit) runHooks(phase string, hooks []Hook) {
	if len(hooks) == 0 {
		return
	}
	ctx := context.WithoutCancel(u.ctx)
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

// Parent returns the unit this one joined or nested in, or nil for a root
// unit.
func (u *Unit) Parent() *Unit { return u.parent }
