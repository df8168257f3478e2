package uowpgx_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// A pgx pool takes part in a two-phase commit, and holds the decisions: the
// failure that makes the plain commit above partial (a deferred constraint
// on the second source) now rolls back both, and a unit without it commits
// both.
func TestPgxTwoPhase(t *testing.T) {
	pgtest.RequirePrepared(t)
	db, pool, _ := pgxFixture(t)
	db.MustExec(uow.TwoPhaseSchema(""))
	other := pgtest.Fresh(t, "uowpgx_2pc")
	child := pgtest.DeferredFK(t, other)
	tbl := pgtest.Table(t, other, "items", `v int`)
	m := uow.New(other, uowpgx.WithPool("pgx", pool),
		uow.TwoPhase(uow.TwoPhaseConfig{Prefix: "uowpgx_test", Decisions: pool, Grace: time.Minute}))
	_, err := m.Recover(context.Background())
	require.NoError(t, err)

	err = m.Do(context.Background(), func(ctx context.Context) error {
		if _, err := uowpgx.From(ctx, pool).Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
			return err
		}
		_, err := repo.From(ctx, other).ExecContext(ctx, `INSERT INTO `+child+` VALUES (42)`)
		return err
	}, uow.Atomic())
	var ce *uow.CommitError
	require.ErrorAs(t, err, &ce)
	assert.NotErrorIs(t, err, uow.ErrPartialCommit)
	assert.Equal(t, uow.DefaultSource, ce.Failed)
	assert.Equal(t, []string{"pgx"}, ce.RolledBack)
	assert.Zero(t, count(t, db, "t"), "the prepared pgx source was rolled back")

	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		if _, err := uowpgx.From(ctx, pool).Exec(ctx, `INSERT INTO t VALUES (2)`); err != nil {
			return err
		}
		_, err := repo.From(ctx, other).ExecContext(ctx, `INSERT INTO `+tbl+` VALUES (2)`)
		return err
	}, uow.Atomic()))
	assert.Equal(t, 1, count(t, db, "t"))
	assert.Equal(t, 1, count(t, other, tbl))
	var left int
	require.NoError(t, db.Get(&left, `SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'uowpgx\_test.%'`))
	assert.Zero(t, left)
}
