package uowpgx_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/faultproxy"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// proxiedPool is a fresh database with t(v int), a direct handle on it, and
// a guarded pgx pool that reaches it through a fault proxy.
func proxiedPool(t *testing.T) (*sqlx.DB, *faultproxy.Proxy, *pgxpool.Pool) {
	t.Helper()
	u := pgtest.FreshURL(t, "uowpgx")
	db, err := sqlx.Open("postgres", u)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	db.MustExec(`CREATE TABLE t (v int)`)
	proxy := faultproxy.Start(t, "127.0.0.1:5432")
	pu, err := url.Parse(u)
	require.NoError(t, err)
	pu.Host = proxy.Addr()
	return db, proxy, newPool(t, pu.String(), 2)
}

// insertOne adds a row to t through the unit in ctx.
func insertOne(ctx context.Context, pool *pgxpool.Pool, v int) error {
	_, err := uowpgx.From(ctx, pool).Exec(ctx, `INSERT INTO t VALUES ($1)`, v)
	return err
}

// With ResolveOutcomes, a pgx pool's COMMIT whose answer was lost is
// resolved against the server: committed when it reached it, rolled back
// when it did not, harmless when the transaction never wrote.
func TestPgxResolvedCommitOutcomes(t *testing.T) {
	t.Run("reply lost", func(t *testing.T) {
		db, proxy, pool := proxiedPool(t)
		m := uow.New(nil, uowpgx.WithPool("main", pool), uow.ResolveOutcomes(10*time.Second))
		var hooks []string
		err := m.Do(context.Background(), func(ctx context.Context) error {
			if err := insertOne(ctx, pool, 1); err != nil {
				return err
			}
			_ = uow.AfterCommit(ctx, func(context.Context) error { hooks = append(hooks, "commit"); return nil })
			proxy.DropCommitReply(true)
			return nil
		})
		require.NoError(t, err)
		assert.EqualValues(t, 1, proxy.DroppedCommits())
		assert.Equal(t, []string{"commit"}, hooks)
		assert.Equal(t, 1, count(t, db, "t"))
	})
	t.Run("commit lost", func(t *testing.T) {
		db, proxy, pool := proxiedPool(t)
		m := uow.New(nil, uowpgx.WithPool("main", pool), uow.ResolveOutcomes(10*time.Second))
		err := m.Do(context.Background(), func(ctx context.Context) error {
			if err := insertOne(ctx, pool, 1); err != nil {
				return err
			}
			proxy.DropCommit(true)
			return nil
		})
		require.Error(t, err)
		assert.EqualValues(t, 1, proxy.LostCommits())
		assert.NotErrorIs(t, err, uow.ErrCommitUnknown)
		var ce *uow.CommitError
		require.ErrorAs(t, err, &ce)
		assert.False(t, ce.Unknown)
		assert.Zero(t, count(t, db, "t"))
	})
	t.Run("read only", func(t *testing.T) {
		_, proxy, pool := proxiedPool(t)
		m := uow.New(nil, uowpgx.WithPool("main", pool), uow.ResolveOutcomes(10*time.Second))
		err := m.Do(context.Background(), func(ctx context.Context) error {
			// The SELECT begins the transaction, which writes nothing.
			var n int
			if err := uowpgx.From(ctx, pool).QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
				return err
			}
			proxy.DropCommitReply(true)
			return nil
		})
		require.NoError(t, err)
		assert.EqualValues(t, 1, proxy.DroppedCommits())
	})
	t.Run("option off", func(t *testing.T) {
		db, proxy, pool := proxiedPool(t)
		m := uow.New(nil, uowpgx.WithPool("main", pool))
		err := m.Do(context.Background(), func(ctx context.Context) error {
			if err := insertOne(ctx, pool, 1); err != nil {
				return err
			}
			proxy.DropCommitReply(true)
			return nil
		})
		require.ErrorIs(t, err, uow.ErrCommitUnknown)
		assert.Equal(t, 1, count(t, db, "t"))
	})
}
