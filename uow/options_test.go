package uow_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/nopdriver"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// nopDB is a pool on a driver that does nothing: no server, no I/O.
func nopDB(t testing.TB) *sqlx.DB {
	db := sqlx.NewDb(sql.OpenDB(nopdriver.Connector{}), "postgres")
	t.Cleanup(func() { db.Close() })
	return db
}

func TestContradictoryOptionsAreRejected(t *testing.T) {
	m := uow.New(nopDB(t))
	ctx := context.Background()
	cases := []struct {
		name string
		opts []uow.Option
		bad  bool
	}{
		{"two isolation levels", []uow.Option{uow.Isolation(sql.LevelSerializable), uow.Isolation(sql.LevelReadCommitted)}, true},
		{"the same level twice", []uow.Option{uow.Isolation(sql.LevelSerializable), uow.Isolation(sql.LevelSerializable)}, false},
		{"Retry and NoRetry", []uow.Option{uow.Retry(retry.Policy{}), uow.NoRetry()}, true},
		{"NoRetry and Retry", []uow.Option{uow.NoRetry(), uow.Retry(retry.Policy{})}, true},
		{"Retry twice", []uow.Option{uow.Retry(retry.Policy{}), uow.Retry(retry.Policy{MaxAttempts: 2})}, true},
		{"NoRetry twice", []uow.Option{uow.NoRetry(), uow.NoRetry()}, false},
		{"two timeouts", []uow.Option{uow.Timeout(time.Second), uow.Timeout(time.Minute)}, true},
		{"two propagations", []uow.Option{uow.Propagate(uow.Nested), uow.Propagate(uow.RequiresNew)}, true},
		{"ReadOnly twice", []uow.Option{uow.ReadOnly(), uow.ReadOnly()}, false},
		{"the zero Option", []uow.Option{{}, uow.ReadOnly()}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, u := m.Begin(ctx, c.opts...)
			defer u.Rollback()
			err := m.Do(ctx, func(context.Context) error { return nil }, c.opts...)
			if c.bad {
				require.ErrorIs(t, u.Err(), uow.ErrInvalidOptions)
				require.ErrorIs(t, err, uow.ErrInvalidOptions)
				return
			}
			require.NoError(t, u.Err())
			require.NoError(t, err)
		})
	}
}

// An option of a call overrides the manager's default of the same kind:
// that is not a contradiction.
func TestCallOptionsOverrideDefaults(t *testing.T) {
	db := nopDB(t)
	m := uow.New(db, uow.WithDefaults(uow.Isolation(sql.LevelSerializable), uow.NoRetry()))
	_, u := m.Begin(context.Background(), uow.Isolation(sql.LevelRepeatableRead), uow.Retry(retry.Policy{}))
	require.NoError(t, u.Err())
	require.NoError(t, u.Commit())
	require.PanicsWithValue(t, "uow: WithDefaults: uow: contradictory options: Retry/NoRetry given twice with different values", func() {
		uow.New(db, uow.WithDefaults(uow.NoRetry(), uow.Retry(retry.Policy{})))
	})
}

func TestMisuseFailsClearly(t *testing.T) {
	m := uow.New(nopDB(t))
	require.PanicsWithValue(t, "uow: negative Timeout -1s", func() { uow.Timeout(-time.Second) })
	//lint:ignore SA1012 a nil context is the misuse under test
	require.PanicsWithValue(t, "uow: nil Context", func() { m.Begin(nil) }) //nolint:staticcheck
	//lint:ignore SA1012 a nil context is the misuse under test
	require.PanicsWithValue(t, "uow: nil Context", func() { _ = m.Do(nil, func(context.Context) error { return nil }) }) //nolint:staticcheck
	require.PanicsWithValue(t, "uow: NewRunner: nil manager or constructor", func() { uow.NewRunner[int](nil, nil) })

	// A nil unit (FromContext outside one) fails every use, never panics.
	ctx := context.Background()
	u := uow.FromContext(ctx)
	require.Nil(t, u)
	require.ErrorIs(t, u.Commit(), uow.ErrNoUnit)
	require.NoError(t, u.Rollback())
	require.ErrorIs(t, u.Err(), uow.ErrNoUnit)
	require.ErrorIs(t, u.SetRollbackOnly(), uow.ErrNoUnit)
	require.ErrorIs(t, u.RollbackOnly(), uow.ErrNoUnit)
	require.ErrorIs(t, u.AfterCommit(func(context.Context) error { return nil }), uow.ErrNoUnit)
	_, err := u.On(nil).ExecContext(ctx, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrNoUnit)
	var n int
	require.ErrorIs(t, u.On(nil).QueryRowContext(ctx, `SELECT 1`).Scan(&n), uow.ErrNoUnit)
	_, err = u.Conn(ctx, nil)
	require.ErrorIs(t, err, uow.ErrNoUnit)
	require.ErrorIs(t, uow.AfterCommit(ctx, func(context.Context) error { return nil }), uow.ErrNoUnit)
	require.ErrorIs(t, uow.SetRollbackOnly(ctx), uow.ErrNoUnit)
}

// Allocation counts are exact, so they are asserted: they guard the cost of
// the core against regressions. The figures are those of the redesign on a
// driver that does nothing; database/sql's own allocations are included.
func TestAllocations(t *testing.T) {
	db := nopDB(t)
	m := uow.New(db)
	ctx := context.Background()
	empty := func(context.Context) error { return nil }
	insert := func(n int) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			for i := range n {
				if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO t VALUES ($1)`, i); err != nil {
					return err
				}
			}
			return nil
		}
	}
	hand := func(n int) func() {
		return func() {
			tx, err := db.BeginTxx(ctx, nil)
			require.NoError(t, err)
			for i := range n {
				_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES ($1)`, i)
				require.NoError(t, err)
			}
			require.NoError(t, tx.Commit())
		}
	}
	do := func(fn func(context.Context) error) func() {
		return func() { require.NoError(t, m.Do(ctx, fn)) }
	}
	allocs := func(f func()) float64 { return testing.AllocsPerRun(200, f) }

	assert.Equal(t, 1.0, allocs(do(empty)), "an unused unit: one allocation, no round trip")
	one, hand1 := allocs(do(insert(1))), allocs(hand(1))
	five, hand5 := allocs(do(insert(5))), allocs(hand(5))
	t.Logf("1 INSERT: %v allocs (hand-written %v); 5 INSERTs: %v (hand-written %v)", one, hand1, five, hand5)
	// database/sql's own count varies by one from run to run (the goroutine
	// that watches each transaction's context), hence one of slack. Two of
	// the allocations are the goroutine and channel of a BEGIN on a
	// context that can end (Do's): they bound a BEGIN that lib/pq would
	// not interrupt (TestPgBouncerQueuedUnitHonoursTimeout).
	assert.LessOrEqual(t, one-hand1, 6.0, "a one-statement unit costs at most 5 allocations over hand-written")
	assert.LessOrEqual(t, (five-one)-(hand5-hand1), 5.0, "each further statement costs at most one allocation over hand-written")
}
