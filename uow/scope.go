package uow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// This file holds the scope tree: a root unit and the joined and nested
// units begun inside it, their states, and rollback-only marks. All of it
// is guarded by the root's txn.mu, which is never held across a round trip.

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
	stateActive    state = iota
	stateFinishing       // Commit or Rollback is under way: no new work
	stateCommitted
	stateRolledBack
)

// Unit is a unit of work: a lazily begun set of transactions, one per source
// it uses, that commit or roll back together. A Unit is one scope: the
// outermost (root) unit owns the transactions; a joined unit participates in
// its outer unit; a nested unit is a savepoint. Units are safe for concurrent
// use by the goroutines of one request.
//
// A nil *Unit (FromContext outside a unit) is safe to use: its handles fail
// every statement with ErrNoUnit, and so do its methods, except Rollback,
// which has nothing to do and returns nil.
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
	handleBuf     [2]Handle // the handles of the first sources, by index
	handles       []Handle  // the handles of the others, made on first use
	savepoint     string    // kindNested: savepoint name, assigned on first use
	spBranches    []*branch // kindNested: branches where the savepoint exists

	// Stored in the unit so that beginning one costs one allocation: the
	// context Begin returns (and, for a root unit, its txn: see rootUnit).
	sctx scopeCtx
}

// rootUnit is a root unit and its txn, allocated together; joined and
// nested units, which share their root's txn, are bare Units.
type rootUnit struct {
	u Unit
	t txn
}

// scopeCtx is the context a unit's Begin returns: its parent's, answering
// the unit's key with the unit.
type scopeCtx struct {
	context.Context
	u *Unit
}

// Value returns the unit for its key; a root unit's context then answers
// from what the Observer returned for the unit (a tracer's span), and
// finally from its parent.
func (c *scopeCtx) Value(key any) any {
	if key == (unitKey{}) {
		return c.u
	}
	if c.u.kind == kindRoot {
		if o := c.u.t.obs.load(); o != nil {
			return o.Value(key)
		}
	}
	return c.Context.Value(key)
}

// String describes the context, as the context package's own do.
func (c *scopeCtx) String() string { return "uow.unit context" }

// txn is the state shared by all scopes of one root unit.
type txn struct {
	mu        sync.Mutex
	m         *Manager
	opts      config
	ctx       context.Context // the root's context: its end aborts the unit
	root      *Unit
	branches  []*branch // in order of first use
	branchBuf [2]*branch
	first     branch // the first branch, stored here to save an allocation
	pinned    []*sqlx.Conn
	spSeq     int
	stop      func() bool // stops the cancellation watcher
	// committing is the branch whose COMMIT is in flight: an abort
	// interrupts it.
	committing *branch
	aborted    bool    // the root's context ended
	nested     []*Unit // nested scopes begun in the unit, in order
	// over is closed when the root unit has finished, for callers that
	// found it finishing in another goroutine; made by the first of them.
	over chan struct{}

	// Observation, when the manager has an Observer.
	obs       observed  // what the Observer's Start returned for the unit
	started   bool      // the unit's first use was reported
	unitStart time.Time // when
	scopes    []Propagation
}

// obsCtx returns the context the unit's operations are reported on: the
// one the Observer returned for the unit, else the unit's own.
func (t *txn) obsCtx() context.Context {
	if o := t.obs.load(); o != nil {
		return o
	}
	return t.ctx
}

// awaitOver waits until the root unit, found finishing by another goroutine
// (an abort, a concurrent Commit), has finished, so that its caller returns
// only once the unit's connections are released. t.mu is held; it is
// released.
func (t *txn) awaitOver() {
	if t.root.state != stateFinishing {
		t.mu.Unlock()
		return
	}
	if t.over == nil {
		t.over = make(chan struct{})
	}
	over := t.over
	t.mu.Unlock()
	<-over
}

type unitKey struct{}

func (unitKey) String() string { return "uow.unit" }

// FromContext returns the unit active in ctx, or nil.
func FromContext(ctx context.Context) *Unit {
	u, _ := ctx.Value(unitKey{}).(*Unit)
	return u
}

// Err returns the configuration error the unit was begun with (ErrNoUnit for
// Mandatory propagation without an active unit, ErrIncompatible,
// ErrInvalidOptions), or nil. A nil unit returns ErrNoUnit.
func (u *Unit) Err() error {
	if u == nil {
		return ErrNoUnit
	}
	return u.err
}

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
	if u == nil {
		return ErrNoUnit
	}
	u.t.mu.Lock()
	defer u.t.mu.Unlock()
	if err := u.activeLocked(); err != nil {
		return err
	}
	u.failLocked(ErrRollbackRequested)
	return nil
}

// RollbackOnly returns why the unit will roll back on Commit, or nil.
func (u *Unit) RollbackOnly() error {
	if u == nil {
		return ErrNoUnit
	}
	u.t.mu.Lock()
	defer u.t.mu.Unlock()
	return u.rollbackOnly
}

// SetRollbackOnly marks the unit active in ctx so that it rolls back however
// it finishes; see Unit.SetRollbackOnly. Without an active unit it returns
// ErrNoUnit.
func SetRollbackOnly(ctx context.Context) error {
	return FromContext(ctx).SetRollbackOnly()
}

// On returns the unit's lazy handle on db, one of the databases given to the
// manager (New, WithSource): the one way to name a source. Repositories
// bound explicitly to the unit (NewRunner) get their handles from it. The
// handle of a database the manager was not given, or of a nil unit, fails
// every statement (with ErrUnknownSource, ErrNoUnit) and sends nothing.
func (u *Unit) On(db *sqlx.DB) *Handle {
	if u == nil {
		return &Handle{err: ErrNoUnit}
	}
	s := u.m.sourceOf(db)
	if s == nil {
		if db == nil {
			return &Handle{u: u, err: fmt.Errorf("%w: nil database", ErrUnknownSource)}
		}
		return &Handle{u: u, err: fmt.Errorf("%w: a database the manager was not given (uow.New, uow.WithSource)", ErrUnknownSource)}
	}
	if i := s.index; i < len(u.handleBuf) {
		return &u.handleBuf[i] // set up by Begin, never written again
	}
	u.t.mu.Lock()
	defer u.t.mu.Unlock()
	if u.handles == nil {
		u.handles = make([]Handle, len(u.m.sources))
	}
	h := &u.handles[s.index]
	if h.u == nil {
		*h = Handle{u: u, src: s}
	}
	return h
}

// initHandles sets up the handles of the first sources, before the unit is
// shared, so that On finds them without a lock.
func (u *Unit) initHandles() {
	for i, s := range u.m.sources {
		if i == len(u.handleBuf) {
			break
		}
		u.handleBuf[i] = Handle{u: u, src: s}
	}
}
