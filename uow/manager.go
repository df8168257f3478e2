package uow

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// DefaultSource is the name of the database given to New.
const DefaultSource = "default"

// Manager begins units of work over one or more databases (sources). It is
// safe for concurrent use; create one per application and share it.
type Manager struct {
	sources  []source
	byName   map[string]int
	byDB     map[*sqlx.DB]int
	defaults config
	observer Observer
}

type source struct {
	name string
	db   *sqlx.DB
}

// ManagerOption configures a Manager.
type ManagerOption func(*Manager)

// New returns a manager whose default source is db. db may be nil for a
// manager whose units never touch a database (tests, fakes): statements on
// its default source then fail with ErrUnknownSource.
//
// Misconfiguration (a duplicate or empty source name, a nil database given to
// WithSource) panics with a "uow:" prefix: it is a programming error found at
// start-up, never at request time.
func New(db *sqlx.DB, opts ...ManagerOption) *Manager {
	m := &Manager{byName: map[string]int{}, byDB: map[*sqlx.DB]int{}}
	if db != nil {
		m.add(DefaultSource, db)
	}
	for _, o := range opts {
		if o != nil {
			o(m)
		}
	}
	return m
}

func (m *Manager) add(name string, db *sqlx.DB) {
	m.byName[name] = len(m.sources)
	m.byDB[db] = len(m.sources)
	m.sources = append(m.sources, source{name: name, db: db})
}

// WithSource adds a named database. Units span every source they use: each
// gets its own lazily begun transaction, and all commit or roll back together.
func WithSource(name string, db *sqlx.DB) ManagerOption {
	return func(m *Manager) {
		switch {
		case name == "":
			panic("uow: WithSource: empty name")
		case db == nil:
			panic(fmt.Sprintf("uow: WithSource(%q): nil database", name))
		}
		if _, dup := m.byName[name]; dup {
			panic(fmt.Sprintf("uow: WithSource(%q): duplicate source name", name))
		}
		if other, dup := m.byDB[db]; dup {
			panic(fmt.Sprintf("uow: WithSource(%q): database already added as %q", name, m.sources[other].name))
		}
		m.add(name, db)
	}
}

// WithObserver reports begins, commits, rollbacks, hook failures and retries
// to o. See NewSlogObserver.
func WithObserver(o Observer) ManagerOption {
	return func(m *Manager) { m.observer = o }
}

// WithDefaults sets options applied to every unit before its own options.
func WithDefaults(opts ...Option) ManagerOption {
	return func(m *Manager) {
		for _, o := range opts {
			if o != nil {
				o(&m.defaults)
			}
		}
	}
}

// DB returns the manager's default database, or nil.
func (m *Manager) DB() *sqlx.DB {
	if i, ok := m.byName[DefaultSource]; ok {
		return m.sources[i].db
	}
	return nil
}

// sourceName returns the configured name of db, or a name derived from its
// position among the databases a unit enlisted.
func (m *Manager) sourceName(db *sqlx.DB, n int) string {
	if i, ok := m.byDB[db]; ok {
		return m.sources[i].name
	}
	return fmt.Sprintf("db#%d", n)
}

// Begin attaches a lazy unit of work to ctx and returns the derived context
// and the unit. No database work happens until a repository first uses a
// source through the returned context (see repo.From) or through the unit's
// handles; only then is that source's transaction begun with the unit's
// options. The context governs the unit's life: when it is cancelled, or the
// Timeout option's deadline passes, the unit is rolled back and its
// connections are released, even if nobody calls Rollback.
//
// With a unit already active in ctx, the Propagate option decides (Join by
// default). Configuration errors (ErrNoUnit for Mandatory, ErrIncompatible)
// are reported by every use of the unit and by Commit, and by Err.
//
// Always finish the unit: defer u.Rollback() right after Begin and call
// u.Commit() on success.
func (m *Manager) Begin(ctx context.Context, opts ...Option) (context.Context, *Unit) {
	c := m.config(opts)
	outer := From(ctx)
	if c.propagation == RequiresNew || (outer == nil && c.propagation != Mandatory) {
		return m.beginRoot(ctx, c)
	}
	if outer == nil {
		return m.failed(ctx, c, ErrNoUnit)
	}
	if !compatible(outer.boundary().t.opts, c) {
		return m.failed(ctx, c, fmt.Errorf("%w: requested %s, active unit has %s",
			ErrIncompatible, describe(c), describe(outer.boundary().t.opts)))
	}
	kind := kindJoined
	if c.propagation == Nested {
		kind = kindNested
	}
	u := &Unit{m: m, t: outer.t, parent: outer, kind: kind, opts: c}
	if c.timeout > 0 {
		ctx, u.cancel = context.WithTimeout(ctx, c.timeout)
	}
	u.ctx = context.WithValue(ctx, unitKey{}, u)
	return u.ctx, u
}

func (m *Manager) beginRoot(ctx context.Context, c config) (context.Context, *Unit) {
	u := &Unit{m: m, kind: kindRoot, opts: c}
	if c.timeout > 0 {
		ctx, u.cancel = context.WithTimeout(ctx, c.timeout)
	}
	u.t = &txn{m: m, opts: c, ctx: ctx, root: u}
	u.ctx = context.WithValue(ctx, unitKey{}, u)
	return u.ctx, u
}

// failed returns a unit that reports err on every use, so that a repository
// under it fails instead of silently running outside a transaction.
func (m *Manager) failed(ctx context.Context, c config, err error) (context.Context, *Unit) {
	u := &Unit{m: m, kind: kindRoot, opts: c, err: err}
	u.t = &txn{m: m, opts: c, ctx: ctx, root: u}
	u.state = stateRolledBack
	u.ctx = context.WithValue(ctx, unitKey{}, u)
	return u.ctx, u
}

func describe(c config) string {
	mode := "read-write"
	if c.readOnly {
		mode = "read-only"
	}
	return fmt.Sprintf("%s %s", effectiveIsolation(c.isolation), mode)
}
