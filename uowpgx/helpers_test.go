package uowpgx_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// newPool opens a guarded pgx pool on url, closed (and checked for leaked
// connections) at the end of the test.
func newPool(t *testing.T, url string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	uowpgx.Guard(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close) // each test checks that its connections came back (released)
	return pool
}

// source is one kind of source, for scenarios that run over both.
type source struct {
	opt  uow.ManagerOption
	exec func(ctx context.Context, sql string, args ...any) error
	// one runs a query returning one int through the unit in ctx, if any.
	one func(ctx context.Context, sql string, args ...any) (int, error)
	// busy is how many connections the source's pool has handed out.
	busy func() int
}

// kinds are the two kinds of source a unit spans: database/sql (lib/pq,
// through sqlx) and pgx's own pool.
var kinds = []struct {
	name string
	open func(t *testing.T, name, url string, maxConns int) source
}{
	{"sqlx", func(t *testing.T, name, url string, maxConns int) source {
		db, err := sqlx.Open("postgres", url)
		require.NoError(t, err)
		db.SetMaxOpenConns(maxConns)
		t.Cleanup(func() { db.Close() })
		opt := uow.WithSource(name, db)
		return source{
			opt: opt,
			exec: func(ctx context.Context, sql string, args ...any) error {
				_, err := repo.From(ctx, db).ExecContext(ctx, sql, args...)
				return err
			},
			one: func(ctx context.Context, sql string, args ...any) (n int, err error) {
				err = repo.From(ctx, db).GetContext(ctx, &n, sql, args...)
				return n, err
			},
			busy: func() int { return db.Stats().InUse },
		}
	}},
	{"pgx", func(t *testing.T, name, url string, maxConns int) source {
		pool := newPool(t, url, int32(maxConns))
		return source{
			opt: uowpgx.WithPool(name, pool),
			exec: func(ctx context.Context, sql string, args ...any) error {
				_, err := uowpgx.From(ctx, pool).Exec(ctx, sql, args...)
				return err
			},
			one: func(ctx context.Context, sql string, args ...any) (n int, err error) {
				err = uowpgx.From(ctx, pool).QueryRow(ctx, sql, args...).Scan(&n)
				return n, err
			},
			busy: func() int { return int(pool.Stat().AcquiredConns()) },
		}
	}},
}

// fixture is a database of its own with a table t(v int), and a source on it.
type fixture struct {
	db  *sqlx.DB // direct access, outside any unit
	src source
	m   *uow.Manager
}

func newFixture(t *testing.T, open func(t *testing.T, name, url string, maxConns int) source, maxConns int, opts ...uow.ManagerOption) *fixture {
	t.Helper()
	url := pgtest.FreshURL(t, "uowpgx")
	db, err := sqlx.Open("postgres", url)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	db.MustExec(`CREATE TABLE t (v int PRIMARY KEY)`)
	src := open(t, "main", url, maxConns)
	return &fixture{db: db, src: src, m: uow.New(nil, append([]uow.ManagerOption{src.opt}, opts...)...)}
}

func (f *fixture) count(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, f.db.Get(&n, `SELECT count(*) FROM t`))
	return n
}
