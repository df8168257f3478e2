package uowpgx_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// A pool source's read-only units run on its replica pool; a write unit
// under a Consistency records the primary's position, and a read-only unit
// under it, with replay paused, reads the primary instead of a stale
// replica, reported to the Observer.
func TestPgxReplicas(t *testing.T) {
	primary := newPool(t, pgtest.URL(t, "uowpgx_replica"), 4)
	replica := newPool(t, pgtest.ReplicaURL(t, "uowpgx_replica"), 4)
	ctx := context.Background()
	_, err := primary.Exec(ctx, `CREATE TABLE IF NOT EXISTS r (v int)`)
	require.NoError(t, err)
	var fallbacks []error
	m := uow.New(nil, uowpgx.WithPool("main", primary),
		uowpgx.WithReplicas(primary, uowpgx.Replicas{Pools: []*pgxpool.Pool{replica}}),
		uow.WithObserver(uow.ObserverFunc(func(_ context.Context, e uow.Event) {
			if e.Kind == uow.EventReplicaFallback {
				fallbacks = append(fallbacks, e.Err)
			}
		})))
	read := func(ctx context.Context) (n int, standby bool) {
		require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
			q := uowpgx.From(ctx, primary)
			if err := q.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
				return err
			}
			return q.QueryRow(ctx, `SELECT count(*) FROM r`).Scan(&n)
		}, uow.ReadOnly()))
		return n, standby
	}
	c := uow.NewConsistency()
	cctx := uow.WithConsistency(ctx, c)
	require.Eventually(t, func() bool { // the replica has replayed the table
		var ok bool
		return replica.QueryRow(ctx, `SELECT to_regclass('r') IS NOT NULL`).Scan(&ok) == nil && ok
	}, 30*time.Second, 10*time.Millisecond)

	pgtest.PauseReplay(t)

	require.NoError(t, m.Do(cctx, func(ctx context.Context) error {
		_, err := uowpgx.From(ctx, primary).Exec(ctx, `INSERT INTO r VALUES (1)`)
		return err
	}))
	n, standby := read(ctx)
	assert.True(t, standby, "read-only: the replica")
	assert.Zero(t, n, "stale without a position")
	n, standby = read(cctx)
	assert.False(t, standby, "behind the position: the primary")
	assert.Equal(t, 1, n)
	require.Len(t, fallbacks, 1)
	assert.ErrorIs(t, fallbacks[0], uow.ErrReplicaBehind)
}
