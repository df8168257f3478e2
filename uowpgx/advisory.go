package uowpgx

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// AdvisoryLock is uow.AdvisoryLock for a pgx pool source: it takes
// PostgreSQL's transaction-scoped advisory lock on key
// (pg_advisory_xact_lock) in the transaction of the unit in ctx on pool,
// beginning it on first use. The wait honours ctx and the unit's deadline;
// a wait cut short makes the unit rollback-only. The lock is held until the
// unit's transaction on pool ends (or a nested unit that took it rolls
// back), so it is safe behind PgBouncer's transaction pooling, where a
// session lock would stay with a server connection handed to other clients.
//
// Outside a unit it sends nothing and returns an error wrapping
// uow.ErrNoUnit: it never falls back to a session lock. On a pool the
// manager was not given (WithPool) it fails with uow.ErrUnknownSource.
func AdvisoryLock(ctx context.Context, pool *pgxpool.Pool, key int64) error {
	q, err := TxFrom(ctx, pool)
	if err != nil {
		return fmt.Errorf("uowpgx: AdvisoryLock(%d) outside a unit: %w", key, err)
	}
	if _, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, key); err != nil {
		return fmt.Errorf("uowpgx: AdvisoryLock(%d): %w", key, err)
	}
	return nil
}

// TryAdvisoryLock is AdvisoryLock without the wait
// (pg_try_advisory_xact_lock): it reports whether the unit's transaction on
// pool now holds the lock on key (true also when it held it already), and
// false, without marking the unit, when another transaction holds it.
func TryAdvisoryLock(ctx context.Context, pool *pgxpool.Pool, key int64) (bool, error) {
	q, err := TxFrom(ctx, pool)
	if err != nil {
		return false, fmt.Errorf("uowpgx: TryAdvisoryLock(%d) outside a unit: %w", key, err)
	}
	var ok bool
	if err := q.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1::bigint)`, key).Scan(&ok); err != nil {
		return false, fmt.Errorf("uowpgx: TryAdvisoryLock(%d): %w", key, err)
	}
	return ok, nil
}
