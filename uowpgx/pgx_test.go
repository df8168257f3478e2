package uowpgx_test

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/faultproxy"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// pgxFixture is a fresh database with t(v int) and a guarded pool on it.
func pgxFixture(t *testing.T) (*sqlx.DB, *pgxpool.Pool, *uow.Manager) {
	t.Helper()
	u := pgtest.FreshURL(t, "uowpgx")
	db, err := sqlx.Open("postgres", u)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	db.MustExec(`CREATE TABLE t (v int PRIMARY KEY)`)
	pool := newPool(t, u, 4)
	t.Cleanup(func() { released(t, source{busy: func() int { return int(pool.Stat().AcquiredConns()) }}) })
	return db, pool, uow.New(nil, uowpgx.WithPool("main", pool))
}

func count(t *testing.T, db *sqlx.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM `+table))
	return n
}

// A unit spanning a pgx pool and a database/sql source commits both, and a
// COMMIT that fails on the second after the first committed is reported as
// the partial commit it is.
func TestPgxAndSQLInOneUnit(t *testing.T) {
	db, pool, _ := pgxFixture(t)
	other := pgtest.Fresh(t, "uowpgx_sql")
	child := pgtest.DeferredFK(t, other)
	tbl := pgtest.Table(t, other, "items", `v int`)
	m := uow.New(other, uowpgx.WithPool("pgx", pool))

	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		if _, err := uowpgx.From(ctx, pool).Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
			return err
		}
		_, err := repo.From(ctx, other).ExecContext(ctx, `INSERT INTO `+tbl+` VALUES (1)`)
		return err
	}))
	assert.Equal(t, 1, count(t, db, "t"))
	assert.Equal(t, 1, count(t, other, tbl))

	err := m.Do(context.Background(), func(ctx context.Context) error {
		if _, err := uowpgx.From(ctx, pool).Exec(ctx, `INSERT INTO t VALUES (2)`); err != nil {
			return err
		}
		// Checked only at COMMIT, where it fails: after the pgx source,
		// used first, committed.
		_, err := repo.From(ctx, other).ExecContext(ctx, `INSERT INTO `+child+` VALUES (42)`)
		return err
	})
	require.ErrorIs(t, err, uow.ErrPartialCommit)
	var ce *uow.CommitError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, []string{"pgx"}, ce.Committed)
	assert.Equal(t, uow.DefaultSource, ce.Failed)
	assert.False(t, ce.Unknown)
	assert.Equal(t, 2, count(t, db, "t"), "the pgx source did commit")
	assert.Zero(t, count(t, other, child))
}

// The COMMIT's answer is lost: the outcome is unknown, reported as such and
// never retried, although the server did commit.
func TestPgxCommitOutcomeUnknown(t *testing.T) {
	u := pgtest.FreshURL(t, "uowpgx")
	db, err := sqlx.Open("postgres", u)
	require.NoError(t, err)
	defer db.Close()
	db.MustExec(`CREATE TABLE t (v int)`)
	proxy := faultproxy.Start(t, "127.0.0.1:5432")
	pu, err := url.Parse(u)
	require.NoError(t, err)
	pu.Host = proxy.Addr()
	pool := newPool(t, pu.String(), 2)
	m := uow.New(nil, uowpgx.WithPool("main", pool))
	calls := 0
	err = m.Do(context.Background(), func(ctx context.Context) error {
		calls++
		if _, err := uowpgx.From(ctx, pool).Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
			return err
		}
		proxy.DropCommitReply(true)
		return nil
	}, uow.Retry(retry.Policy{MaxAttempts: 5, Classifiers: []retry.Classifier{func(error) bool { return true }}}))
	require.ErrorIs(t, err, uow.ErrCommitUnknown)
	assert.Equal(t, 1, calls, "an unknown outcome is never retried")
	assert.Equal(t, 1, count(t, db, "t"), "the server did commit")
}

// Statements of goroutines sharing a unit run one at a time; one issued
// while rows are open fails with ErrBusy; a unit finished with rows still
// open closes them before its ROLLBACK, so the rollback never races the
// query (pgx issue #2332), and the connection goes back to the pool.
func TestPgxConcurrencyAndOpenRows(t *testing.T) {
	db, pool, m := pgxFixture(t)
	ctx, u := m.Begin(context.Background())
	q := uowpgx.From(ctx, pool)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			_, err := q.Exec(ctx, `INSERT INTO t VALUES ($1)`, i)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	rows, err := q.Query(ctx, `SELECT v FROM t ORDER BY v`)
	require.NoError(t, err)
	require.True(t, rows.Next())
	_, err = q.Exec(ctx, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrBusy)
	require.NoError(t, u.RollbackOnly(), "ErrBusy sent nothing: the unit is not doomed")

	// Rolled back with the rows open, from another goroutine.
	conns := pool.Stat().NewConnsCount()
	done := make(chan error, 1)
	go func() { done <- u.Rollback() }()
	require.NoError(t, <-done)
	assert.False(t, rows.Next(), "the rows were closed by the rollback")
	require.ErrorIs(t, rows.Err(), uow.ErrDone, "rows cut short say so")
	assert.Zero(t, count(t, db, "t"))

	// While another goroutine is still reading: the rollback waits for the
	// row being read, closes the rows, and rolls back cleanly, so the
	// connection is kept, not torn down under the reader.
	ctx, u = m.Begin(context.Background())
	// Rows of 8 KiB: the server flushes each as it is made, 5 ms apart.
	rows, err = uowpgx.From(ctx, pool).Query(ctx, `SELECT g, repeat('x', 8192), pg_sleep(0.005) FROM generate_series(1, 400) AS g`)
	require.NoError(t, err)
	read := make(chan int)
	go func() {
		n := 0
		for rows.Next() {
			if n++; n == 3 {
				read <- n
			}
		}
		read <- n
	}()
	<-read // the reader is well into the rows
	require.NoError(t, u.Rollback())
	n := <-read
	assert.Less(t, n, 400, "the rollback cut the reading short")
	require.ErrorIs(t, rows.Err(), uow.ErrDone, "and the reader is told")
	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		_, err := uowpgx.From(ctx, pool).Exec(ctx, `SELECT 1`)
		return err
	}))
	assert.Equal(t, conns, pool.Stat().NewConnsCount(), "no connection was torn down and replaced")
}

// A query's error surfaces while its rows are read; it still dooms the unit.
func TestPgxQueryErrorWhileReadingMarksTheUnit(t *testing.T) {
	_, pool, m := pgxFixture(t)
	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	rows, err := uowpgx.From(ctx, pool).Query(ctx, `SELECT 1 / (v - v) FROM (VALUES (1)) AS x(v)`)
	require.NoError(t, err, "the error comes with the rows")
	for rows.Next() {
	}
	require.Error(t, rows.Err())
	require.Error(t, u.RollbackOnly())
	require.ErrorIs(t, u.Commit(), uow.ErrRollbackOnly)

	// QueryRow's error surfaces from Scan, and dooms the unit too.
	ctx, u = m.Begin(context.Background())
	defer u.Rollback()
	var n int
	err = uowpgx.From(ctx, pool).QueryRow(ctx, `SELECT 1/0`).Scan(&n)
	code, _ := retry.SQLState(err)
	assert.Equal(t, "22012", code)
	require.ErrorIs(t, u.Commit(), uow.ErrRollbackOnly)
}

// CopyFrom and SendBatch run in the unit's transaction: 1,000 copied rows go
// when the unit fails after them, and stay when it commits.
func TestPgxCopyFromAndBatchFollowTheUnit(t *testing.T) {
	db, pool, m := pgxFixture(t)
	copyRows := func(ctx context.Context, from int) error {
		src := make([][]any, 1000)
		for i := range src {
			src[i] = []any{from + i}
		}
		n, err := uowpgx.From(ctx, pool).CopyFrom(ctx, pgx.Identifier{"t"}, []string{"v"}, pgx.CopyFromRows(src))
		if err == nil && n != 1000 {
			err = fmt.Errorf("copied %d rows", n)
		}
		return err
	}
	require.ErrorIs(t, m.Do(context.Background(), func(ctx context.Context) error {
		require.NoError(t, copyRows(ctx, 0))
		return errBoom
	}), errBoom)
	assert.Zero(t, count(t, db, "t"), "the copy rolled back entirely")

	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		if err := copyRows(ctx, 0); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES (5000)`)
		b.Queue(`SELECT count(*) FROM t`)
		br := uowpgx.From(ctx, pool).SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			return err
		}
		var n int
		if err := br.QueryRow().Scan(&n); err != nil {
			return err
		}
		assert.Equal(t, 1001, n, "the batch sees the unit's copy")
		return br.Close()
	}))
	assert.Equal(t, 1001, count(t, db, "t"))

	require.ErrorIs(t, m.Do(context.Background(), func(ctx context.Context) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES (6000)`)
		require.NoError(t, uowpgx.From(ctx, pool).SendBatch(ctx, b).Close())
		return errBoom
	}), errBoom)
	assert.Equal(t, 1001, count(t, db, "t"), "the batch rolled back with the unit")
}

// The trap: the pool itself inside a unit. Guard refuses it, TxFrom refuses
// to run outside a unit, and a pool the manager was not given is refused.
func TestPgxTrapAndMisuse(t *testing.T) {
	db, pool, m := pgxFixture(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `INSERT INTO t VALUES (1)`)
	require.NoError(t, err, "outside a unit the pool autocommits")
	err = m.Do(ctx, func(ctx context.Context) error {
		_, err := pool.Exec(ctx, `INSERT INTO t VALUES (2)`)
		return err
	})
	require.ErrorIs(t, err, uow.ErrAutocommit)
	err = m.Do(ctx, func(ctx context.Context) error {
		var n int
		return pool.QueryRow(ctx, `SELECT 1`).Scan(&n)
	})
	require.ErrorIs(t, err, uow.ErrAutocommit)

	_, err = uowpgx.TxFrom(ctx, pool)
	require.ErrorIs(t, err, uow.ErrNoUnit)

	stray := newPool(t, pgtest.URL(t, "uowpgx_stray"), 1)
	err = m.Do(ctx, func(ctx context.Context) error {
		_, err := uowpgx.From(ctx, stray).Exec(ctx, `SELECT 1`)
		return err
	})
	require.ErrorIs(t, err, uow.ErrUnknownSource)
	_, err = uowpgx.From(ctx, nil).Exec(ctx, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrUnknownSource)

	// Repositories bound explicitly to a unit (uow.NewRunner) use On.
	runner := uow.NewRunner(m, func(u *uow.Unit) uowpgx.Querier { return uowpgx.On(u, pool) })
	require.NoError(t, runner.Do(ctx, func(ctx context.Context, q uowpgx.Querier) error {
		_, err := q.Exec(ctx, `INSERT INTO t VALUES (10)`)
		return err
	}))
	_, err = uowpgx.On(nil, pool).Exec(ctx, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrNoUnit)
	db.MustExec(`DELETE FROM t WHERE v = 10`)

	// A finished unit never falls back to autocommit.
	ctx2, u := m.Begin(ctx)
	require.NoError(t, u.Commit())
	_, err = uowpgx.From(ctx2, pool).Exec(ctx2, `INSERT INTO t VALUES (3)`)
	require.ErrorIs(t, err, uow.ErrDone)
	assert.Equal(t, 1, count(t, db, "t"))

	require.PanicsWithValue(t, `uow: WithSource("x"): nil pool`, func() { uow.New(nil, uowpgx.WithPool("x", nil)) })
	require.Panics(t, func() { uow.New(nil, uowpgx.WithPool("a", pool), uowpgx.WithPool("b", pool)) })
}
