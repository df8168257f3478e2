package uow_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
)

// held reports whether a unit on observer, a pool of its own (other
// sessions than the pool under test), finds key taken.
func held(t *testing.T, observer *sqlx.DB, key int64) bool {
	t.Helper()
	var ok bool
	require.NoError(t, uow.New(observer).Do(context.Background(), func(ctx context.Context) error {
		var err error
		ok, err = uow.TryAdvisoryLock(ctx, observer, key)
		return err
	}))
	return !ok
}

func TestAdvisoryLockIsScopedToTheTransaction(t *testing.T) {
	db, counts := pgtest.OpenCounting(t, "uow")
	other := pgtest.Open(t, "uow") // a pool the manager was not given
	m := uow.New(db)
	const key int64 = 727301

	t.Run("outside a unit it sends nothing", func(t *testing.T) {
		before := counts.Total()
		require.ErrorIs(t, uow.AdvisoryLock(context.Background(), db, key), uow.ErrNoUnit)
		ok, err := uow.TryAdvisoryLock(context.Background(), db, key)
		require.ErrorIs(t, err, uow.ErrNoUnit)
		assert.False(t, ok)
		assert.Equal(t, before, counts.Total(), "no statement sent: never a session lock")
		assert.False(t, held(t, other, key))
	})

	t.Run("held until commit and until rollback", func(t *testing.T) {
		key := key + 1 // a key of its own: a failure here does not hold up the others
		for _, commit := range []bool{true, false} {
			ctx, u := m.Begin(context.Background())
			require.NoError(t, uow.AdvisoryLock(ctx, db, key))
			ok, err := uow.TryAdvisoryLock(ctx, db, key)
			require.NoError(t, err)
			assert.True(t, ok, "the unit holding it may take it again")
			assert.True(t, held(t, other, key))
			if commit {
				require.NoError(t, u.Commit())
			} else {
				require.NoError(t, u.Rollback())
			}
			assert.False(t, held(t, other, key), "released with the transaction (commit: %v)", commit)
		}
	})

	t.Run("a nested unit that rolls back releases it", func(t *testing.T) {
		key := key + 2
		ctx, u := m.Begin(context.Background())
		defer u.Rollback()
		require.ErrorIs(t, m.Do(ctx, func(ctx context.Context) error {
			require.NoError(t, uow.AdvisoryLock(ctx, db, key))
			assert.True(t, held(t, other, key))
			return errBouncerBoom
		}, uow.Propagate(uow.Nested)), errBouncerBoom)
		assert.False(t, held(t, other, key), "ROLLBACK TO SAVEPOINT released it")
		require.NoError(t, u.Commit())
	})

	t.Run("the wait honours the context, and LockTimeout", func(t *testing.T) {
		key := key + 3
		hold, holder := m.Begin(context.Background(), uow.Timeout(time.Minute))
		defer holder.Rollback()
		require.NoError(t, uow.AdvisoryLock(hold, db, key))

		ctx, u := m.Begin(context.Background(), uow.Timeout(time.Minute))
		defer u.Rollback()
		wait, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- uow.AdvisoryLock(wait, db, key) }()
		pgtest.WaitBlocked(t, db, "pg_advisory_xact_lock", 1)
		cancel()
		require.Error(t, <-done, "the wait was given up")
		require.ErrorIs(t, u.Commit(), uow.ErrRollbackOnly, "an interrupted statement dooms the transaction")

		err := m.Do(context.Background(), func(ctx context.Context) error {
			return uow.AdvisoryLock(ctx, db, key)
		}, uow.LockTimeout(50*time.Millisecond))
		assert.Equal(t, "55P03", sqlState(err), "lock_not_available: %v", err)
		require.NoError(t, holder.Commit())
	})

	t.Run("on a database the manager was not given", func(t *testing.T) {
		require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
			require.ErrorIs(t, uow.AdvisoryLock(ctx, other, key), uow.ErrUnknownSource)
			_, err := uow.TryAdvisoryLock(ctx, other, key)
			require.ErrorIs(t, err, uow.ErrUnknownSource)
			return nil
		}))
	})
}
