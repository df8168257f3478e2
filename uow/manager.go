package uow

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// DefaultSource is the name under which reports (a *CommitError, a
// *BeginError, an Event) refer to the database given to New.
const DefaultSource = "default"

// Manager begins units of work over one or more databases (sources). It is
// safe for concurrent use; create one per application and share it.
type Manager struct {
	sources  []*source
	byKey    map[any]*source // by *sqlx.DB, or an adapter's pool
	defaults config
	observer Observer
	resolve  time.Duration // ResolveOutcomes's bound; 0 when off
	twoPhase *twoPhase     // TwoPhase's configuration; nil when off
	replicas []pendingReplicas
}

// ManagerOption configures a Manager.
type ManagerOption func(*Manager)

// New returns a manager whose default source is db. db may be nil for a
// manager whose units never touch a database (tests, fakes).
//
// Misconfiguration (a duplicate or empty source name, a nil database given to
// WithSource, contradictory WithDefaults) panics with a "uow:" prefix: it is
// a programming error found at start-up, never at request time.
func New(db *sqlx.DB, opts ...ManagerOption) *Manager {
	m := &Manager{byKey: map[any]*source{}}
	if db != nil {
		m.add(DefaultSource, db)
	}
	for _, o := range opts {
		if o != nil {
			o(m)
		}
	}
	if m.twoPhase != nil {
		m.twoPhase.bind(m)
	}
	m.bindReplicas()
	return m
}

func (m *Manager) add(name string, db *sqlx.DB) {
	m.addSource(&source{name: name, db: db, key: db, backend: sqlBackend{db}})
}

func (m *Manager) addSource(s *source) {
	s.index = len(m.sources)
	m.sources = append(m.sources, s)
	m.byKey[s.key] = s
}

// WithSource adds a named database. Units span every source they use: each
// gets its own lazily begun transaction, and all commit or roll back together.
// The name identifies the source in reports.
func WithSource(name string, db *sqlx.DB) ManagerOption {
	return func(m *Manager) {
		switch {
		case name == "":
			panic("uow: WithSource: empty name")
		case db == nil:
			panic(fmt.Sprintf("uow: WithSource(%q): nil database", name))
		}
		m.checkNew(name, db)
		m.add(name, db)
	}
}

// checkNew panics if name or key is already a source.
func (m *Manager) checkNew(name string, key any) {
	for _, s := range m.sources {
		if s.name == name {
			panic(fmt.Sprintf("uow: WithSource(%q): duplicate source name", name))
		}
	}
	if s, dup := m.byKey[key]; dup {
		panic(fmt.Sprintf("uow: WithSource(%q): database already added as %q", name, s.name))
	}
}

// WithObserver reports begins, commits, rollbacks, hook failures and retries
// to o. See NewSlogObserver.
func WithObserver(o Observer) ManagerOption {
	return func(m *Manager) { m.observer = o }
}

// WithDefaults sets options applied to every unit before its own options;
// an option given to Begin or Do overrides the default of the same kind.
// Contradictory defaults (two isolation levels, Retry with NoRetry) panic.
func WithDefaults(opts ...Option) ManagerOption {
	return func(m *Manager) {
		c := m.defaults
		c.set = 0
		for _, o := range opts {
			c.apply(o)
		}
		if c.err != nil {
			panic("uow: WithDefaults: " + c.err.Error())
		}
		c.set = 0
		m.defaults = c
	}
}

// Begin attaches a lazy unit of work to ctx and returns the derived context
// and the unit. No database work happens until a repository first uses a
// source through the returned context (see repo.From) or through the unit's
// handles ([Unit.On]); only then is that source's transaction begun with the
// unit's options.
//
// The context governs the unit's life. Waiting for a pool connection and the
// BEGIN itself honour it (and the Timeout option): an exhausted pool gives
// an error matching context.DeadlineExceeded or context.Canceled, not an
// unbounded wait. When the context ends, the unit is rolled back and its
// connections are released, even if nobody calls Rollback, and even while a
// BEGIN, a statement or a COMMIT is in flight.
//
// With a unit already active in ctx, the Propagate option decides (Join by
// default). Configuration errors (ErrNoUnit for Mandatory, ErrIncompatible,
// ErrInvalidOptions) are reported by every use of the unit, by Commit, and
// by Err.
//
// Always finish the unit: defer u.Rollback() right after Begin and call
// u.Commit() on success. Begin panics if ctx is nil, as the context package
// does.
func (m *Manager) Begin(ctx context.Context, opts ...Option) (context.Context, *Unit) {
	if ctx == nil {
		panic("uow: nil Context")
	}
	return m.begin(ctx, m.config(opts))
}

// begin is Begin with the options resolved.
func (m *Manager) begin(ctx context.Context, c config) (context.Context, *Unit) {
	if c.err != nil {
		return m.failed(ctx, c, c.err)
	}
	outer := FromContext(ctx)
	if c.propagation == RequiresNew || (outer == nil && c.propagation != Mandatory) {
		return m.beginRoot(ctx, c)
	}
	if outer == nil {
		return m.failed(ctx, c, ErrNoUnit)
	}
	if outer.m != m {
		return m.failed(ctx, c, fmt.Errorf("%w: the active unit belongs to another manager", ErrIncompatible))
	}
	if root := outer.t.opts; !compatible(root, c) {
		return m.failed(ctx, c, fmt.Errorf("%w: requested %s, active unit has %s",
			ErrIncompatible, describe(c), describe(root)))
	}
	kind := kindJoined
	if c.propagation == Nested {
		kind = kindNested
	}
	u := &Unit{m: m, t: outer.t, parent: outer, kind: kind, opts: c}
	if m.observer != nil || kind == kindNested {
		u.t.mu.Lock()
		if m.observer != nil {
			u.t.scopes = append(u.t.scopes, c.propagation)
		}
		if kind == kindNested {
			u.t.nested = append(openScopes(u.t.nested), u)
		}
		u.t.mu.Unlock()
	}
	if c.timeout > 0 {
		ctx, u.cancel = context.WithTimeout(ctx, c.timeout)
	}
	u.initHandles()
	return u.bindContext(ctx), u
}

func (m *Manager) beginRoot(ctx context.Context, c config) (context.Context, *Unit) {
	r := &rootUnit{u: Unit{m: m, kind: kindRoot, opts: c}}
	u := &r.u
	if c.timeout > 0 {
		ctx, u.cancel = context.WithTimeout(ctx, c.timeout)
	}
	r.t.init(m, c, ctx, u)
	u.t = &r.t
	u.initHandles()
	return u.bindContext(ctx), u
}

// failed returns a unit that reports err on every use, so that a repository
// under it fails instead of silently running outside a transaction.
func (m *Manager) failed(ctx context.Context, c config, err error) (context.Context, *Unit) {
	r := &rootUnit{u: Unit{m: m, kind: kindRoot, opts: c, err: err, state: stateRolledBack}}
	u := &r.u
	r.t.init(m, c, ctx, u)
	u.t = &r.t
	u.initHandles()
	return u.bindContext(ctx), u
}

// openScopes drops the nested scopes that have finished, so that a unit
// running many nested units one after another keeps only those still open.
func openScopes(nested []*Unit) []*Unit {
	open := nested[:0]
	for _, n := range nested {
		if n.state == stateActive || n.state == stateFinishing {
			open = append(open, n)
		}
	}
	clear(nested[len(open):])
	return open
}

// sourceOf returns the source of db, or nil: a scan for the few sources
// most applications have, a map for more.
func (m *Manager) sourceOf(db *sqlx.DB) *source {
	if len(m.sources) <= 4 {
		for _, s := range m.sources {
			if s.db == db && db != nil {
				return s
			}
		}
		return nil
	}
	if db == nil {
		return nil
	}
	return m.byKey[db]
}

// bindContext makes u's context: ctx, carrying u.
func (u *Unit) bindContext(ctx context.Context) context.Context {
	u.sctx = scopeCtx{Context: ctx, u: u}
	u.ctx = &u.sctx
	return u.ctx
}

// init sets up the txn of root unit u.
func (t *txn) init(m *Manager, c config, ctx context.Context, u *Unit) {
	t.m, t.opts, t.ctx, t.root = m, c, ctx, u
	t.branches = t.branchBuf[:0]
}
