package uow

import "context"

// AfterCommit registers fn with the unit active in ctx; see Unit.AfterCommit.
// Without an active unit it returns ErrNoUnit: the work it follows is not in a
// transaction, so "after commit" has no meaning.
func AfterCommit(ctx context.Context, fn Hook) error {
	u := From(ctx)
	if u == nil {
		return ErrNoUnit
	}
	return u.AfterCommit(fn)
}

// AfterRollback registers fn with the unit active in ctx; see
// Unit.AfterRollback. Without an active unit it returns ErrNoUnit.
func AfterRollback(ctx context.Context, fn Hook) error {
	u := From(ctx)
	if u == nil {
		return ErrNoUnit
	}
	return u.AfterRollback(fn)
}

// SetRollbackOnly marks the unit active in ctx so that it rolls back however
// it finishes; see Unit.SetRollbackOnly. Without an active unit it returns
// ErrNoUnit.
func SetRollbackOnly(ctx context.Context) error {
	u := From(ctx)
	if u == nil {
		return ErrNoUnit
	}
	return u.SetRollbackOnly()
}
