package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"

	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.MainOptional(m)) }

// suite runs one repository test against every supported database.
func suite(t *testing.T, test func(t *testing.T, db *sqlx.DB, d store.Dialect)) {
	t.Run("postgres", func(t *testing.T) {
		db := pgtest.Fresh(t, "store_"+t.Name())
		require.NoError(t, store.Migrate(context.Background(), db))
		test(t, db, store.Postgres)
	})
	t.Run("sqlite", func(t *testing.T) {
		db := sqlx.MustOpen("sqlite", "file:"+filepath.Join(t.TempDir(), "s.db")+"?_pragma=foreign_keys(1)")
		t.Cleanup(func() { db.Close() })
		require.NoError(t, store.Migrate(context.Background(), db))
		test(t, db, store.SQLite)
	})
}

func TestMigrateIsIdempotent(t *testing.T) {
	suite(t, func(t *testing.T, db *sqlx.DB, _ store.Dialect) {
		require.NoError(t, store.Migrate(context.Background(), db))
		var n int
		require.NoError(t, db.Get(&n, `SELECT count(*) FROM schema_migrations`))
		assert.Equal(t, 4, n, "001, 002, the outbox and the inbox, once each")
	})
}

func TestRepositoriesInAUnit(t *testing.T) {
	suite(t, func(t *testing.T, db *sqlx.DB, d store.Dialect) {
		m := uow.New(db)
		ctx := context.Background()
		var team domain.Team
		err := m.Do(ctx, func(ctx context.Context) error {
			h := uow.FromContext(ctx).On(db)
			var err error
			if team, err = store.NewTeams(h, d).Create(ctx, domain.Team{Name: "Reds", Capacity: 3}); err != nil {
				return err
			}
			if err := store.NewRosters(h).Init(ctx, team.ID); err != nil {
				return err
			}
			p, err := store.NewPlayers(h, d).Create(ctx, domain.Player{Name: "Ann", TeamID: team.ID})
			if err != nil {
				return err
			}
			if err := store.NewRosters(h).Add(ctx, team.ID, 1); err != nil {
				return err
			}
			locked, err := store.NewPlayers(h, d).Lock(ctx, p.ID)
			assert.Equal(t, p, locked)
			return err
		})
		require.NoError(t, err)
		assert.NotZero(t, team.ID)

		// The read side is the projection: apply the events, the join
		// first, which must wait for the team's creation.
		proj := store.NewProjection(db)
		apply := func(e domain.Event) error {
			return m.Do(ctx, func(ctx context.Context) error { return proj.Apply(ctx, e, time.Now()) })
		}
		joined := domain.Event{ID: "j", Type: domain.PlayerJoined, TeamID: team.ID, PlayerID: 1, PlayerName: "Ann", OccurredAt: time.Now()}
		require.ErrorIs(t, apply(joined), store.ErrNotYet, "a join before its team's creation waits")
		require.NoError(t, apply(domain.Event{ID: "c", Type: domain.TeamCreated, TeamID: team.ID, TeamName: "Reds", Capacity: 3, OccurredAt: time.Now()}))
		require.NoError(t, apply(joined))
		moved := domain.Event{ID: "m", Type: domain.PlayerMoved, TeamID: team.ID, PlayerID: 1, FromTeamID: 42, ToTeamID: team.ID}
		require.ErrorIs(t, apply(moved), store.ErrNotYet, "a move from a team the player is not on yet waits")
		history, err := store.NewQueries(db).History(ctx, team.ID)
		require.NoError(t, err)
		require.Len(t, history, 1)
		assert.Equal(t, domain.PlayerJoined, history[0].Type)

		roster, err := store.NewQueries(db).Roster(ctx, team.ID)
		require.NoError(t, err)
		assert.Equal(t, "Reds", roster.Name)
		require.Len(t, roster.Players, 1)
		assert.Equal(t, "Ann", roster.Players[0].Name)
		n, err := store.NewRosters(db).Count(ctx, team.ID)
		require.NoError(t, err)
		assert.Equal(t, 1, n)

		_, err = store.NewTeams(db, d).Lock(ctx, 999)
		assert.Equal(t, domain.NotFound, domain.ErrorCode(err))
		_, err = store.NewQueries(db).Roster(ctx, 999)
		assert.Equal(t, domain.NotFound, domain.ErrorCode(err))

		// A rolled-back unit leaves nothing behind.
		_ = m.Do(ctx, func(ctx context.Context) error {
			_, err := store.NewTeams(uow.FromContext(ctx).On(db), d).Create(ctx, domain.Team{Name: "Ghost", Capacity: 1})
			require.NoError(t, err)
			return errors.New("changed my mind")
		})
		var teams int
		require.NoError(t, db.Get(&teams, `SELECT count(*) FROM teams`))
		assert.Equal(t, 1, teams)
	})
}

// mocked returns a PostgreSQL-flavoured pool on sqlmock, closed at the end of
// the test.
func mocked(t *testing.T) (*sqlx.DB, sqlmock.Sqlmock) {
	raw, mock, err := sqlmock.New()
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	return sqlx.NewDb(raw, "postgres"), mock
}

// A statement that fails (here a lost connection, which a server cannot be
// told to cause at one exact statement) rolls the unit back: uowkit sends
// the ROLLBACK, so the mock must expect it.
func TestStatementFailureInjectedWithSqlmock(t *testing.T) {
	db, mock := mocked(t)
	mock.ExpectBegin()
	mock.ExpectQuery(`INSERT INTO teams`).WithArgs("Reds", 3).WillReturnError(errors.New("connection reset"))
	mock.ExpectRollback()

	err := uow.New(db).Do(context.Background(), func(ctx context.Context) error {
		_, err := store.NewTeams(uow.FromContext(ctx).On(db), store.Postgres).Create(ctx, domain.Team{Name: "Reds", Capacity: 3})
		return err
	})
	assert.EqualError(t, err, "connection reset")
	require.NoError(t, mock.ExpectationsWereMet())
}

// A COMMIT failure cannot be produced on demand by every real server (a
// network cut at the exact moment, a disk full): sqlmock injects it, to test
// how the code above reacts.
func TestCommitFailureInjectedWithSqlmock(t *testing.T) {
	db, mock := mocked(t)
	mock.ExpectBegin()
	mock.ExpectQuery(`INSERT INTO teams`).WithArgs("Reds", 3).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
	mock.ExpectCommit().WillReturnError(errors.New("disk full"))

	published := false
	err := uow.New(db).Do(context.Background(), func(ctx context.Context) error {
		if _, err := store.NewTeams(uow.FromContext(ctx).On(db), store.Postgres).Create(ctx, domain.Team{Name: "Reds", Capacity: 3}); err != nil {
			return err
		}
		return uow.AfterCommit(ctx, func(context.Context) error { published = true; return nil })
	})
	var ce *uow.CommitError
	require.ErrorAs(t, err, &ce)
	assert.EqualError(t, ce.Err, "disk full")
	assert.False(t, published, "nothing is published when the commit fails")
	require.NoError(t, mock.ExpectationsWereMet())
}

// A real SQLITE_BUSY (another connection holds the write lock, and the
// busy timeout is zero) is retryable: package retry recognises it by
// behaviour, without importing the SQLite driver, so a unit with a retry
// policy (the service's, see app.RetryPolicy) re-runs the work rather than
// failing it. The store's SQLite pool has one connection and a busy
// timeout, so the service rarely meets it; another process writing to the
// same file can still cause it.
func TestRealSQLiteBusyIsRetryable(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "busy.db")+"?_pragma=busy_timeout(0)")
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	c1, err := db.Conn(ctx)
	require.NoError(t, err)
	defer c1.Close()
	c2, err := db.Conn(ctx)
	require.NoError(t, err)
	defer c2.Close()
	_, err = c1.ExecContext(ctx, `BEGIN IMMEDIATE`)
	require.NoError(t, err)
	defer c1.ExecContext(ctx, `ROLLBACK`)

	_, err = c2.ExecContext(ctx, `BEGIN IMMEDIATE`)
	var se *sqlite.Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 5, se.Code()&0xff, "SQLITE_BUSY: %v", err)
	assert.True(t, retry.Retryable(fmt.Errorf("repo: %w", err)), "%T %v", err, err)
}
