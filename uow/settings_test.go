package uow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// StatementTimeout and LockTimeout are enforced by the server, for the
// unit's transaction only: the next unit on the same connection runs
// without them.
func TestServerSideTimeouts(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			db := openDB(t, drv, pgtest.URL(t, "uow"))
			db.SetMaxOpenConns(1) // the next unit gets the same session
			tbl := newTable(t, db)
			m := uow.New(db)
			ctx := context.Background()

			err := m.Do(ctx, func(ctx context.Context) error {
				_, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `SELECT pg_sleep(5)`)
				return err
			}, uow.StatementTimeout(50*time.Millisecond))
			code, _ := retry.SQLState(err)
			require.Equal(t, "57014", code, "cancelled by the server: %v", err)

			// A unit with the option that commits (a session SET made in a
			// transaction that rolls back is undone; one that commits
			// stays)...
			require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
				_, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `SELECT 1`)
				return err
			}, uow.StatementTimeout(50*time.Millisecond)))
			// ...then the same session, without the option: no timeout is
			// left.
			require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
				var setting string
				if err := uow.FromContext(ctx).On(db).GetContext(ctx, &setting, `SHOW statement_timeout`); err != nil {
					return err
				}
				assert.Equal(t, "0", setting)
				_, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `SELECT pg_sleep(0.1)`)
				return err
			}))

			// A lock held elsewhere: LockTimeout gives up.
			require.NoError(t, insert(ctx, db, tbl, "held"))
			other := openDB(t, drv, pgtest.URL(t, "uow"))
			holder, err := other.Beginx()
			require.NoError(t, err)
			defer holder.Rollback()
			_, err = holder.Exec(`UPDATE ` + tbl + ` SET v = 'mine' WHERE v = 'held'`)
			require.NoError(t, err)
			err = m.Do(ctx, func(ctx context.Context) error {
				_, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `UPDATE `+tbl+` SET v = 'yours' WHERE v = 'held'`)
				return err
			}, uow.LockTimeout(50*time.Millisecond), uow.StatementTimeout(time.Minute))
			code, _ = retry.SQLState(err)
			require.Equal(t, "55P03", code, "lock_timeout: %v", err)
		})
	}
}

func TestServerSideTimeoutOptions(t *testing.T) {
	assert.Panics(t, func() { uow.StatementTimeout(time.Microsecond) })
	assert.Panics(t, func() { uow.LockTimeout(-time.Second) })
	m := uow.New(nil)
	err := m.Do(context.Background(), func(context.Context) error { return nil },
		uow.StatementTimeout(time.Second), uow.StatementTimeout(2*time.Second))
	require.ErrorIs(t, err, uow.ErrInvalidOptions)
	// A unit that needs a statement_timeout cannot join one without it, or
	// with a longer one; it may join one with a shorter one.
	err = m.Do(context.Background(), func(ctx context.Context) error {
		return m.Do(ctx, func(context.Context) error { return nil }, uow.StatementTimeout(time.Second))
	})
	require.ErrorIs(t, err, uow.ErrIncompatible)
	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		return m.Do(ctx, func(context.Context) error { return nil }, uow.StatementTimeout(time.Second))
	}, uow.StatementTimeout(500*time.Millisecond)))
}
