package repo_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

func TestFromOutsideAUnitIsThePool(t *testing.T) {
	db := pgtest.Open(t, "repo")
	assert.Same(t, db, repo.From(context.Background(), db))
}

func TestFromSpansEverySourceTheUnitTouches(t *testing.T) {
	a, b := pgtest.Open(t, "repo"), pgtest.Open(t, "repo_b")
	a.MustExec(`CREATE TABLE IF NOT EXISTS enlist (v int)`)
	b.MustExec(`CREATE TABLE IF NOT EXISTS enlist (v int)`)
	m := uow.New(a, uow.WithSource("b", b))

	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	_, err := repo.From(ctx, a).ExecContext(ctx, `INSERT INTO enlist VALUES (1)`)
	require.NoError(t, err)
	_, err = repo.From(ctx, b).ExecContext(ctx, `INSERT INTO enlist VALUES (1)`)
	require.NoError(t, err)
	require.NoError(t, u.Rollback())

	var n int
	require.NoError(t, a.Get(&n, `SELECT count(*) FROM enlist`))
	assert.Zero(t, n)
	require.NoError(t, b.Get(&n, `SELECT count(*) FROM enlist`))
	assert.Zero(t, n, "the second database rolled back with the unit")
}

func TestFromRefusesADatabaseTheManagerWasNotGiven(t *testing.T) {
	a, b := pgtest.Open(t, "repo"), pgtest.Open(t, "repo_b")
	b.MustExec(`CREATE TABLE IF NOT EXISTS stray (v int)`)
	m := uow.New(a) // b is not a source: inside a unit, it must not autocommit

	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	_, err := repo.From(ctx, b).ExecContext(ctx, `INSERT INTO stray VALUES (1)`)
	require.ErrorIs(t, err, uow.ErrUnknownSource)
	var n int
	require.NoError(t, b.Get(&n, `SELECT count(*) FROM stray`))
	assert.Zero(t, n, "nothing was sent")
}

func TestTxFromRequiresAUnit(t *testing.T) {
	db := pgtest.Open(t, "repo")
	_, err := repo.TxFrom(context.Background(), db)
	require.ErrorIs(t, err, uow.ErrNoUnit)

	m := uow.New(db)
	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	tx, err := repo.TxFrom(ctx, db)
	require.NoError(t, err)
	assert.Same(t, u, tx.Unit())
}

// atomicTransfer only accepts a transaction: passing a *sqlx.DB does not
// compile (see the var block in repo.go).
func atomicTransfer(ctx context.Context, tx repo.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT 1`)
	return err
}

func TestTxIsSatisfiedByAUnitHandle(t *testing.T) {
	db := pgtest.Open(t, "repo")
	m := uow.New(db)
	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		tx, err := repo.TxFrom(ctx, db)
		if err != nil {
			return err
		}
		return atomicTransfer(ctx, tx)
	}))
}

func TestNilDatabaseIsAnErrorNotAPanic(t *testing.T) {
	db := pgtest.Open(t, "repo")
	m := uow.New(db)
	inUnit, u := m.Begin(context.Background())
	defer u.Rollback()
	for name, ctx := range map[string]context.Context{"outside a unit": context.Background(), "inside a unit": inUnit} {
		t.Run(name, func(t *testing.T) {
			q := repo.From(ctx, nil)
			_, err := q.ExecContext(ctx, `SELECT 1`)
			assert.ErrorIs(t, err, uow.ErrUnknownSource)
			var n int
			assert.ErrorIs(t, q.GetContext(ctx, &n, `SELECT 1`), uow.ErrUnknownSource)
			assert.ErrorIs(t, q.SelectContext(ctx, &[]int{}, `SELECT 1`), uow.ErrUnknownSource)
			_, err = q.NamedExecContext(ctx, `SELECT :a`, map[string]any{"a": 1})
			assert.ErrorIs(t, err, uow.ErrUnknownSource)
			rows, err := q.QueryxContext(ctx, `SELECT 1`)
			assert.ErrorIs(t, err, uow.ErrUnknownSource)
			assert.Nil(t, rows)
			assert.ErrorIs(t, q.QueryRowxContext(ctx, `SELECT 1`).Scan(&n), uow.ErrUnknownSource)
			_, err = repo.TxFrom(ctx, nil)
			assert.ErrorIs(t, err, uow.ErrUnknownSource)
		})
	}
	require.NoError(t, u.Commit(), "inside a unit, nothing was sent: the unit is unharmed")
}
