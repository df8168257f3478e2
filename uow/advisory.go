package uow

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// This file holds advisory locks scoped to a unit's transaction: the kind
// that works through a transaction pooler, unlike session advisory locks.

// AdvisoryLock takes PostgreSQL's transaction-scoped advisory lock on key
// (pg_advisory_xact_lock) in the transaction of the unit in ctx on db, one
// of the manager's databases, beginning that transaction if the unit has
// not used db yet. It waits while another transaction holds the lock; the
// wait honours ctx and the unit's own deadline (Timeout), and a wait cut
// short fails like any interrupted statement: the unit becomes
// rollback-only. LockTimeout bounds the wait on the server.
//
// The lock is held until the unit's transaction on db ends, by commit or
// rollback, and is released sooner only when a nested unit
// (Propagate(Nested)) that took it rolls back to its savepoint. Nothing
// releases it by hand, and it never outlives the unit: it is bound to the
// transaction, not to the server connection, so it is safe behind PgBouncer
// in transaction pooling mode, where a session lock
// (pg_advisory_lock) would stay with a server connection that other
// clients are handed next.
//
// Outside a unit, AdvisoryLock sends nothing and returns an error wrapping
// ErrNoUnit: there is no transaction to scope the lock to, and it never
// falls back to a session lock. On a database the manager was not given it
// fails with ErrUnknownSource.
func AdvisoryLock(ctx context.Context, db *sqlx.DB, key int64) error {
	u := FromContext(ctx)
	if u == nil {
		return fmt.Errorf("uow: AdvisoryLock(%d) outside a unit: %w", key, ErrNoUnit)
	}
	if _, err := u.On(db).ExecContext(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, key); err != nil {
		return fmt.Errorf("uow: AdvisoryLock(%d): %w", key, err)
	}
	return nil
}

// TryAdvisoryLock is AdvisoryLock without the wait
// (pg_try_advisory_xact_lock): it reports whether the unit's transaction on
// db now holds the lock on key (true also when it held it already), and
// false, without marking the unit, when another transaction holds it.
func TryAdvisoryLock(ctx context.Context, db *sqlx.DB, key int64) (bool, error) {
	u := FromContext(ctx)
	if u == nil {
		return false, fmt.Errorf("uow: TryAdvisoryLock(%d) outside a unit: %w", key, ErrNoUnit)
	}
	var ok bool
	if err := u.On(db).GetContext(ctx, &ok, `SELECT pg_try_advisory_xact_lock($1::bigint)`, key); err != nil {
		return false, fmt.Errorf("uow: TryAdvisoryLock(%d): %w", key, err)
	}
	return ok, nil
}
