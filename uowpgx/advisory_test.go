package uowpgx_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

func TestPgxAdvisoryLockIsScopedToTheTransaction(t *testing.T) {
	db, pool, m := pgxFixture(t)
	const key int64 = 727302
	// held reports whether a unit on another pool (other sessions than
	// the pool under test) finds key taken.
	other := newPool(t, pool.Config().ConnString(), 1)
	mo := uow.New(nil, uowpgx.WithPool("observer", other))
	held := func(key int64) bool {
		var ok bool
		require.NoError(t, mo.Do(context.Background(), func(ctx context.Context) error {
			var err error
			ok, err = uowpgx.TryAdvisoryLock(ctx, other, key)
			return err
		}))
		return !ok
	}

	t.Run("outside a unit it sends nothing", func(t *testing.T) {
		before := pool.Stat().AcquireCount()
		require.ErrorIs(t, uowpgx.AdvisoryLock(context.Background(), pool, key), uow.ErrNoUnit)
		ok, err := uowpgx.TryAdvisoryLock(context.Background(), pool, key)
		require.ErrorIs(t, err, uow.ErrNoUnit)
		assert.False(t, ok)
		assert.Equal(t, before, pool.Stat().AcquireCount(), "no connection taken: never a session lock")
	})

	t.Run("held until commit and until rollback", func(t *testing.T) {
		key := key + 1 // a key of its own: a failure here does not hold up the others
		for _, commit := range []bool{true, false} {
			ctx, u := m.Begin(context.Background())
			require.NoError(t, uowpgx.AdvisoryLock(ctx, pool, key))
			ok, err := uowpgx.TryAdvisoryLock(ctx, pool, key)
			require.NoError(t, err)
			assert.True(t, ok, "the unit holding it may take it again")
			assert.True(t, held(key))
			if commit {
				require.NoError(t, u.Commit())
			} else {
				require.NoError(t, u.Rollback())
			}
			assert.False(t, held(key), "released with the transaction (commit: %v)", commit)
		}
	})

	t.Run("a nested unit that rolls back releases it", func(t *testing.T) {
		key := key + 2
		ctx, u := m.Begin(context.Background())
		defer u.Rollback()
		require.ErrorIs(t, m.Do(ctx, func(ctx context.Context) error {
			require.NoError(t, uowpgx.AdvisoryLock(ctx, pool, key))
			assert.True(t, held(key))
			return errBoom
		}, uow.Propagate(uow.Nested)), errBoom)
		assert.False(t, held(key), "ROLLBACK TO SAVEPOINT released it")
		require.NoError(t, u.Commit())
	})

	t.Run("the wait honours the context, and LockTimeout", func(t *testing.T) {
		key := key + 3
		hold, holder := m.Begin(context.Background(), uow.Timeout(time.Minute))
		defer holder.Rollback()
		require.NoError(t, uowpgx.AdvisoryLock(hold, pool, key))

		ctx, u := m.Begin(context.Background(), uow.Timeout(time.Minute))
		defer u.Rollback()
		wait, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- uowpgx.AdvisoryLock(wait, pool, key) }()
		pgtest.WaitBlocked(t, db, "pg_advisory_xact_lock", 1)
		cancel()
		require.Error(t, <-done, "the wait was given up")
		require.ErrorIs(t, u.Commit(), uow.ErrRollbackOnly, "an interrupted statement dooms the transaction")

		err := m.Do(context.Background(), func(ctx context.Context) error {
			return uowpgx.AdvisoryLock(ctx, pool, key)
		}, uow.LockTimeout(50*time.Millisecond))
		assert.Equal(t, "55P03", sqlState(err), "lock_not_available: %v", err)
		require.NoError(t, holder.Commit())
	})

	t.Run("on a pool the manager was not given", func(t *testing.T) {
		require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
			require.ErrorIs(t, uowpgx.AdvisoryLock(ctx, other, key), uow.ErrUnknownSource)
			_, err := uowpgx.TryAdvisoryLock(ctx, other, key)
			require.ErrorIs(t, err, uow.ErrUnknownSource)
			return nil
		}))
	})
}
