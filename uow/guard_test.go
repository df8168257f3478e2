package uow_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// guarded opens a pool on the test database through uow.Guard.
func guarded(t *testing.T) *sqlx.DB {
	t.Helper()
	c, err := pq.NewConnector(pgtest.URL(t, "uow"))
	require.NoError(t, err)
	db := sqlx.NewDb(sql.OpenDB(uow.Guard(c)), "postgres")
	t.Cleanup(func() {
		assert.Zero(t, db.Stats().InUse)
		db.Close()
	})
	return db
}

// The trap: inside a unit, a statement sent on the pool instead of the
// unit's handle autocommits at once. A guarded pool refuses it and sends
// nothing; everything else works as before.
func TestGuardRefusesAutocommitUnderAUnit(t *testing.T) {
	db := guarded(t)
	tbl := newTable(t, db)
	m := uow.New(db)
	ctx := context.Background()

	_, err := db.ExecContext(ctx, `INSERT INTO `+tbl+` (v) VALUES ('outside')`)
	require.NoError(t, err, "outside a unit the pool autocommits as usual")

	err = m.Do(ctx, func(ctx context.Context) error {
		if _, err := db.ExecContext(ctx, `INSERT INTO `+tbl+` (v) VALUES ('trap')`); err != nil {
			return err
		}
		return nil
	})
	require.ErrorIs(t, err, uow.ErrAutocommit)

	var n int
	err = m.Do(ctx, func(ctx context.Context) error {
		require.ErrorIs(t, db.GetContext(ctx, &n, `SELECT count(*) FROM `+tbl), uow.ErrAutocommit, "queries too")
		_, err := db.PrepareContext(ctx, `SELECT 1`)
		require.ErrorIs(t, err, uow.ErrAutocommit, "and prepared statements")
		// The unit's own statements, on a transaction of the same pool, run.
		if err := insert(ctx, db, tbl, "unit"); err != nil {
			return err
		}
		// A pinned connection is outside the transaction on purpose.
		c, err := uow.FromContext(ctx).Conn(ctx, db)
		if err != nil {
			return err
		}
		return c.GetContext(ctx, &n, `SELECT 1`)
	})
	require.NoError(t, err)

	// Once the unit is over, its context no longer guards anything.
	ctx2, u := m.Begin(ctx)
	require.NoError(t, u.Commit())
	_, err = db.ExecContext(ctx2, `INSERT INTO `+tbl+` (v) VALUES ('after')`)
	require.NoError(t, err)

	require.NoError(t, repo.From(ctx, db).GetContext(ctx, &n, `SELECT count(*) FROM `+tbl))
	assert.Equal(t, 3, n, "outside, unit and after: the trap wrote nothing")
}

// A connection that served a unit's transaction goes back to the pool out of
// its transaction: the guard still refuses autocommit on it afterwards.
func TestGuardForgetsTheTransactionWhenItEnds(t *testing.T) {
	db := guarded(t)
	db.SetMaxOpenConns(1) // one connection: the same one serves every statement
	tbl := newTable(t, db)
	m := uow.New(db)
	ctx := context.Background()
	for _, end := range []string{"commit", "rollback"} {
		_ = m.Do(ctx, func(ctx context.Context) error {
			if err := insert(ctx, db, tbl, end); err != nil {
				return err
			}
			if end == "rollback" {
				return context.Canceled
			}
			return nil
		})
		err := m.Do(ctx, func(ctx context.Context) error {
			_, err := db.ExecContext(ctx, `INSERT INTO `+tbl+` (v) VALUES ('trap after `+end+`')`)
			return err
		})
		require.ErrorIs(t, err, uow.ErrAutocommit, "after a %s", end)
	}
	assert.Equal(t, 1, count(t, db, tbl))
}
