package uowtest

import (
	"context"
	"errors"
	"sync"

	"github.com/uowkit/uowkit/uow"
)

// ErrCommit is the error a Fake's failed commit returns when FailNextCommit
// was given nil.
var ErrCommit = errors.New("uowtest: commit failed")

// Fake is a uow.Transactor[R] without a database. The zero value is not
// usable; create it with New.
type Fake[R any] struct {
	// Repos is handed to every callback.
	Repos R

	m *uow.Manager

	mu        sync.Mutex
	commitErr []error
	calls     []Call
}

// Call records one Do.
type Call struct {
	// Committed is true when the callback succeeded and the commit went
	// through (AfterCommit hooks ran).
	Committed bool
	// RolledBack is true when the callback failed or panicked, or the commit
	// was made to fail (AfterRollback hooks ran). A commit made to fail with
	// an error matching uow.ErrPartialCommit or uow.ErrCommitUnknown is
	// neither committed nor rolled back, and runs no hook, as with a real
	// manager: only Err records it.
	RolledBack bool
	// Err is what Do returned.
	Err error
	// Options is the number of options the caller passed.
	Options int
}

var _ uow.Transactor[struct{}] = (*Fake[struct{}])(nil)

// New returns a Fake that hands repos to every callback.
func New[R any](repos R) *Fake[R] {
	return &Fake[R]{Repos: repos, m: uow.New(nil)}
}

// FailNextCommit makes the next successful callback's commit fail with err
// (ErrCommit when err is nil): the unit rolls back, AfterRollback hooks run,
// and Do returns the error. When err matches uow.ErrPartialCommit or
// uow.ErrCommitUnknown (for example a *uow.CommitError with Unknown set), no
// hook runs, as with a real manager: some of the work may be durable.
func (f *Fake[R]) FailNextCommit(err error) {
	if err == nil {
		err = ErrCommit
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commitErr = append(f.commitErr, err)
}

// Do runs fn inside a real, database-less unit, so uow.AfterCommit,
// uow.AfterRollback and uow.SetRollbackOnly work in the code under test.
// Propagation options behave as with a real manager (a nested Do joins by
// default).
func (f *Fake[R]) Do(ctx context.Context, fn func(ctx context.Context, r R) error, opts ...uow.Option) (err error) {
	ctx, u := f.m.Begin(ctx, opts...)
	call := Call{Options: len(opts)}
	defer func() {
		p := recover()
		if p != nil {
			_ = u.Rollback()
			call.RolledBack, call.Err = true, errors.New("panic")
		}
		f.record(call)
		if p != nil {
			panic(p)
		}
	}()
	if err = u.Err(); err != nil {
		call.Err = err
		return err
	}
	if err = fn(ctx, f.Repos); err != nil {
		_ = u.Rollback()
		call.RolledBack, call.Err = true, err
		return err
	}
	if cerr := f.nextCommitErr(); cerr != nil {
		call.Err = cerr
		if errors.Is(cerr, uow.ErrPartialCommit) || errors.Is(cerr, uow.ErrCommitUnknown) {
			// Abandoned, not finished: a database-less unit holds nothing,
			// and neither set of hooks may run.
			return cerr
		}
		_ = u.Rollback()
		call.RolledBack = true
		return cerr
	}
	if err = u.Commit(); err != nil {
		call.RolledBack, call.Err = true, err
		return err
	}
	call.Committed = true
	return nil
}

func (f *Fake[R]) nextCommitErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.commitErr) == 0 {
		return nil
	}
	err := f.commitErr[0]
	f.commitErr = f.commitErr[1:]
	return err
}

func (f *Fake[R]) record(c Call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

// Calls returns every Do so far, oldest first.
func (f *Fake[R]) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Commits returns how many Do calls committed.
func (f *Fake[R]) Commits() int { return f.count(func(c Call) bool { return c.Committed }) }

// Rollbacks returns how many Do calls rolled back.
func (f *Fake[R]) Rollbacks() int { return f.count(func(c Call) bool { return c.RolledBack }) }

func (f *Fake[R]) count(pred func(Call) bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if pred(c) {
			n++
		}
	}
	return n
}
