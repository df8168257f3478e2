package uow

import (
	"context"
	"errors"
)

// Do runs fn in a unit of work: nil from fn commits, an error rolls back and
// is returned as is, a panic rolls back and re-panics. fn's context carries
// the unit, so repositories using repo.From join it. fn's error wins over
// the rollback's; otherwise Commit's error is returned (a *CommitError on a
// failed COMMIT).
//
// With a unit already active in ctx, the Propagate option decides: by default
// fn joins it, its failure marks the outer unit rollback-only, and the outer
// unit commits.
//
// An outermost Do retries serialization failures, deadlocks and connection
// failures at BEGIN when the Retry option (or, by default,
// Isolation(sql.LevelSerializable)) says so: fn must then be safe to run more
// than once, with side effects left to AfterCommit hooks.
//
// Do panics if ctx is nil, as the context package does.
func (m *Manager) Do(ctx context.Context, fn func(ctx context.Context) error, opts ...Option) error {
	return m.do(ctx, opts, fn)
}

var errNilFunc = errors.New("uow: Do: nil function")

func (m *Manager) do(ctx context.Context, opts []Option, fn func(ctx context.Context) error) error {
	if ctx == nil {
		panic("uow: nil Context")
	}
	if fn == nil {
		return errNilFunc
	}
	c := m.config(opts)
	if c.err != nil {
		return c.err
	}
	if c.propagation == RequiresNew || FromContext(ctx) == nil && c.propagation != Mandatory {
		if p := c.policy(); p != nil {
			return m.doRetrying(ctx, p, c, fn)
		}
	}
	return m.once(ctx, c, fn)
}

// once runs fn in one unit.
func (m *Manager) once(ctx context.Context, c config, fn func(ctx context.Context) error) error {
	ctx, u := m.begin(ctx, c)
	if u.err != nil {
		return u.err
	}
	// A no-op after Commit; otherwise it rolls back on error, on panic (which
	// then goes on unwinding) and on runtime.Goexit.
	defer u.Rollback()
	if err := fn(ctx); err != nil {
		_ = u.rollback(err) // the Observer hears why
		return err
	}
	return u.Commit()
}

// Transactor is what a service depends on to run work atomically with its
// repositories, R being the application's own struct of repositories. A
// *Runner implements it over a database; uowtest.Fake implements it for unit
// tests without one.
type Transactor[R any] interface {
	Do(ctx context.Context, fn func(ctx context.Context, r R) error, opts ...Option) error
}

// Runner runs callbacks in units of work with repositories bound explicitly
// to the unit, built by the constructor given to NewRunner.
type Runner[R any] struct {
	m     *Manager
	build func(u *Unit) R
}

var _ Transactor[struct{}] = (*Runner[struct{}])(nil)

// NewRunner returns a Runner over m. build makes the application's
// repositories from the unit's handles (u.On(db) for each database); it is
// called once per attempt and should only wire structs together. NewRunner
// panics if m or build is nil.
func NewRunner[R any](m *Manager, build func(u *Unit) R) *Runner[R] {
	if m == nil || build == nil {
		panic("uow: NewRunner: nil manager or constructor")
	}
	return &Runner[R]{m: m, build: build}
}

// Do runs fn in a unit of work, as Manager.Do, with repositories bound to the
// unit.
func (r *Runner[R]) Do(ctx context.Context, fn func(ctx context.Context, r R) error, opts ...Option) error {
	if fn == nil {
		if ctx == nil {
			panic("uow: nil Context")
		}
		return errNilFunc
	}
	return r.m.do(ctx, opts, func(ctx context.Context) error {
		return fn(ctx, r.build(FromContext(ctx)))
	})
}
