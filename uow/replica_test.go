package uow_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// replicated is a primary with a table, and its replica.
type replicated struct {
	primary, replica *sqlx.DB
	table            string
}

func setupReplica(t *testing.T, drv string) replicated {
	t.Helper()
	r := replicated{replica: openDB(t, drv, pgtest.ReplicaURL(t, "replica"))}
	r.primary = openDB(t, drv, pgtest.URL(t, "replica"))
	r.table = newTable(t, r.primary)
	// The replica has the table once it has replayed its creation.
	waitReplayed(t, r.primary, r.replica)
	return r
}

// waitReplayed waits until replica has replayed everything primary had
// written when it was called.
func waitReplayed(t *testing.T, primary, replica *sqlx.DB) {
	t.Helper()
	var lsn string
	require.NoError(t, primary.Get(&lsn, `SELECT pg_current_wal_lsn()::text`))
	require.Eventually(t, func() bool {
		var ok bool
		return replica.Get(&ok, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, lsn) == nil && ok
	}, 30*time.Second, 10*time.Millisecond)
}

// where returns whether the unit in ctx runs on a server in recovery.
func where(ctx context.Context, db *sqlx.DB) (bool, error) {
	var standby bool
	err := uow.FromContext(ctx).On(db).GetContext(ctx, &standby, `SELECT pg_is_in_recovery()`)
	return standby, err
}

// A read-only unit runs on the replica, where a write fails clearly; a
// read-write unit runs on the primary. Repositories name the primary
// either way.
func TestReadOnlyUnitsRunOnTheReplica(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			r := setupReplica(t, drv)
			ev := newEvents()
			m := uow.New(r.primary, uow.WithReplicas(r.primary, uow.Replicas{DBs: []*sqlx.DB{r.replica}}), uow.WithObserver(ev))
			ctx := context.Background()

			err := m.Do(ctx, func(ctx context.Context) error {
				standby, err := where(ctx, r.primary)
				require.NoError(t, err)
				assert.True(t, standby, "a read-only unit reads the replica")
				return insert(ctx, r.primary, r.table, "refused")
			}, uow.ReadOnly())
			code, _ := retry.SQLState(err)
			assert.Equal(t, "25006", code, "a write on the replica fails: %v", err)
			var begins []string
			for _, e := range ev.drain() {
				if e.Kind == uow.EventBegin {
					begins = append(begins, e.Replica)
				}
			}
			assert.Equal(t, []string{"default.replica1"}, begins)

			require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
				standby, err := where(ctx, r.primary)
				require.NoError(t, err)
				assert.False(t, standby, "a read-write unit runs on the primary")
				return insert(ctx, r.primary, r.table, "written")
			}))
			assert.Equal(t, 1, count(t, r.primary, r.table))
		})
	}
}

// Read-your-writes: a write unit under a Consistency records where the
// primary's WAL was after its COMMIT; a read-only unit under it reads the
// replica once it has replayed past that, waiting up to MaxWait, else the
// primary, reported to the Observer. Without the Consistency the read is
// stale while replay is paused, as documented.
func TestReadYourWrites(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			r := setupReplica(t, drv)
			ev := newEvents()
			wait := uow.New(r.primary, uow.WithObserver(ev),
				uow.WithReplicas(r.primary, uow.Replicas{DBs: []*sqlx.DB{r.replica}, MaxWait: 30 * time.Second}))
			noWait := uow.New(r.primary, uow.WithObserver(ev),
				uow.WithReplicas(r.primary, uow.Replicas{DBs: []*sqlx.DB{r.replica}}))
			read := func(m *uow.Manager, ctx context.Context) (rows int, standby bool) {
				require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
					var err error
					if standby, err = where(ctx, r.primary); err != nil {
						return err
					}
					return uow.FromContext(ctx).On(r.primary).GetContext(ctx, &rows, `SELECT count(*) FROM `+r.table)
				}, uow.ReadOnly()))
				return rows, standby
			}

			resume := pgtest.PauseReplay(t)
			c := uow.NewConsistency()
			ctx := uow.WithConsistency(context.Background(), c)
			require.NoError(t, wait.Do(ctx, func(ctx context.Context) error { return insert(ctx, r.primary, r.table, "mine") }))
			require.NotEmpty(t, c.String(), "the commit recorded a position")
			ev.drain()

			// Without a position: the replica, stale.
			rows, standby := read(noWait, context.Background())
			assert.True(t, standby)
			assert.Zero(t, rows, "without a token the read is stale while replay is paused")

			// With it, MaxWait 0: the primary at once, reported.
			rows, standby = read(noWait, ctx)
			assert.False(t, standby)
			assert.Equal(t, 1, rows)
			var fallbacks []error
			for _, e := range ev.drain() {
				if e.Kind == uow.EventReplicaFallback {
					fallbacks = append(fallbacks, e.Err)
				}
			}
			require.Len(t, fallbacks, 1)
			assert.ErrorIs(t, fallbacks[0], uow.ErrReplicaBehind)

			// With it, MaxWait: waits until replay resumes and passes it.
			parsed, err := uow.ParseConsistency(c.String()) // as if it came back over HTTP
			require.NoError(t, err)
			done := make(chan struct{})
			go func() {
				defer close(done)
				rows, standby = read(wait, uow.WithConsistency(context.Background(), parsed))
			}()
			select {
			case <-done:
				t.Fatal("the read did not wait for the replica")
			case <-time.After(100 * time.Millisecond):
			}
			resume()
			<-done
			assert.True(t, standby, "read on the replica once it caught up")
			assert.Equal(t, 1, rows, "and sees the write")
		})
	}
}

// When the replica is stopped, read-only units run on the primary, and the
// Observer is told. (The second replica: only this package uses it, and
// stops it; other packages, running in parallel, use the first.)
func TestReplicaDownFallsBackToThePrimary(t *testing.T) {
	primary := openDB(t, "postgres", pgtest.URL(t, "replica"))
	replica := openDB(t, "postgres", pgtest.Replica2URL(t, "replica"))
	ev := newEvents()
	m := uow.New(primary, uow.WithObserver(ev),
		uow.WithReplicas(primary, uow.Replicas{DBs: []*sqlx.DB{replica}, Cooldown: time.Hour}))
	pgtest.StopReplica2(t)
	defer replica.Close() // its connections are dead
	for range 2 {
		require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
			standby, err := where(ctx, primary)
			assert.False(t, standby)
			return err
		}, uow.ReadOnly()))
	}
	var begins []string
	var fallbacks []error
	for _, e := range ev.drain() {
		switch e.Kind {
		case uow.EventBegin:
			begins = append(begins, e.Replica)
		case uow.EventReplicaFallback:
			fallbacks = append(fallbacks, e.Err)
		}
	}
	assert.Equal(t, []string{"default.replica1", "", ""}, begins, "one failed BEGIN on the replica, then the primary; the second unit skips it (Cooldown)")
	require.Len(t, fallbacks, 2)
	for _, err := range fallbacks {
		assert.True(t, errors.Is(err, uow.ErrNoReplica), "%v", err)
	}
}

func TestConsistencyParsing(t *testing.T) {
	c, err := uow.ParseConsistency("default=16/B374D848,billing=0/1")
	require.NoError(t, err)
	assert.Equal(t, "billing=0/1,default=16/B374D848", c.String())
	for _, bad := range []string{"default", "default=16", "default=x/1", "a b=0/1", "=0/1"} {
		_, err := uow.ParseConsistency(bad)
		assert.Error(t, err, bad)
	}
	c, err = uow.ParseConsistency("")
	require.NoError(t, err)
	assert.Empty(t, c.String())
	assert.Panics(t, func() { uow.WithReplicas(nil, uow.Replicas{}) })
	assert.Panics(t, func() { uow.New(nil, uow.WithReplicas(&sqlx.DB{}, uow.Replicas{DBs: []*sqlx.DB{{}}})) }, "not a source")
}

// Two replicas share the read-only units (round-robin); when one (the
// second) is stopped, the other takes them all, with no fallback to the
// primary.
func TestTwoReplicas(t *testing.T) {
	r := setupReplica(t, "postgres")
	second := openDB(t, "postgres", pgtest.Replica2URL(t, "replica"))
	waitReplayed(t, r.primary, second)
	ev := newEvents()
	m := uow.New(r.primary, uow.WithObserver(ev),
		uow.WithReplicas(r.primary, uow.Replicas{DBs: []*sqlx.DB{r.replica, second}, Cooldown: time.Hour}))
	read := func() {
		require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
			standby, err := where(ctx, r.primary)
			assert.True(t, standby)
			return err
		}, uow.ReadOnly()))
	}
	tally := func() map[string]int {
		n := map[string]int{}
		for _, e := range ev.drain() {
			switch e.Kind {
			case uow.EventBegin:
				n[e.Replica]++
			case uow.EventReplicaFallback:
				n["fallback"]++
			}
		}
		return n
	}
	for range 10 {
		read()
	}
	assert.Equal(t, map[string]int{"default.replica1": 5, "default.replica2": 5}, tally())

	pgtest.StopReplica2(t)
	for range 10 {
		read()
	}
	n := tally()
	assert.Equal(t, 10, n["default.replica1"], "%v", n)
	assert.LessOrEqual(t, n["default.replica2"], 1, "one failed BEGIN at most, then skipped: %v", n)
	assert.Zero(t, n["fallback"])
}
