package uow_test

import (
	"context"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// holdOnly takes the only connection of db in a unit of its own and returns
// the function that lets it go. db must have MaxOpenConns(1).
func holdOnly(t *testing.T, m *uow.Manager, db *sqlx.DB) (release func()) {
	t.Helper()
	ctx, u := m.Begin(context.Background())
	_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
	require.NoError(t, err)
	var once bool
	release = func() {
		if !once {
			once = true
			require.NoError(t, u.Rollback())
		}
	}
	t.Cleanup(release)
	return release
}

// waitForPoolWaiter returns once someone waits for one of db's connections.
func waitForPoolWaiter(t *testing.T, db *sqlx.DB, before int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); db.Stats().WaitCount <= before; {
		if time.Now().After(deadline) {
			t.Fatal("nobody waited for a connection")
		}
		time.Sleep(time.Millisecond)
	}
}

// An exhausted pool is when a service most needs to shed load: a unit gives
// up waiting for a connection when its deadline passes or its caller goes
// away, not when the holder lets go.
func TestExhaustedPoolHonoursTheUnitsContext(t *testing.T) {
	db := pgtest.Open(t, "uow")
	db.SetMaxOpenConns(1)
	tbl := newTable(t, db)
	m := uow.New(db)

	cases := []struct {
		name   string
		opts   []uow.Option
		cancel bool // the caller goes away once the unit waits
		want   error
	}{
		{"timeout", []uow.Option{uow.Timeout(200 * time.Millisecond)}, false, context.DeadlineExceeded},
		{"caller cancelled", nil, true, context.Canceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			release := holdOnly(t, m, db)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			before := db.Stats().WaitCount
			done := make(chan error, 1)
			go func() {
				done <- m.Do(ctx, func(ctx context.Context) error { return insert(ctx, db, tbl, c.name) }, c.opts...)
			}()
			if c.cancel {
				waitForPoolWaiter(t, db, before)
				cancel()
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				release()
				t.Fatal("the unit waited for the holder instead of its own context")
			}
			require.ErrorIs(t, err, c.want)
			var be *uow.BeginError
			require.ErrorAs(t, err, &be, "the unit never got its transaction")
			release()
			assert.Zero(t, count(t, db, tbl))
		})
	}
}

// Two goroutines share a unit and first use two different sources: the one
// whose BEGIN cannot start (its pool is exhausted) holds up neither the other
// source nor a hook registration.
func TestConcurrentFirstUseOfTwoSourcesDoesNotSerialise(t *testing.T) {
	a, b := pgtest.Open(t, "uow"), pgtest.Open(t, "uow_audit")
	a.SetMaxOpenConns(1)
	ta, tb := newTable(t, a), newTable(t, b)
	m := uow.New(a, uow.WithSource("audit", b))
	release := holdOnly(t, m, a)

	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	before := a.Stats().WaitCount
	slow := make(chan error, 1)
	go func() { slow <- insert(ctx, a, ta, "a") }()
	waitForPoolWaiter(t, a, before) // goroutine 1 is inside the BEGIN of source "default"

	fast := make(chan error, 1)
	go func() { fast <- insert(ctx, b, tb, "b") }()
	select {
	case err := <-fast:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		release()
		<-slow
		t.Fatal("source audit waited for the BEGIN of source default")
	}
	require.NoError(t, uow.AfterCommit(ctx, func(context.Context) error { return nil }), "a hook registration does not wait either")
	select {
	case err := <-slow:
		t.Fatalf("the first goroutine got its connection before it was released: %v", err)
	default:
	}
	release()
	require.NoError(t, <-slow)
	require.NoError(t, u.Commit())
	assert.Equal(t, 1, count(t, a, ta))
	assert.Equal(t, 1, count(t, b, tb))
}

// Concurrent first users of one source share one BEGIN.
func TestConcurrentFirstUsersShareOneBegin(t *testing.T) {
	db, counts := pgtest.OpenCounting(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)
	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	errs := make(chan error, 8)
	for i := range 8 {
		go func() { errs <- insert(ctx, db, tbl, string(rune('a'+i))) }()
	}
	for range 8 {
		require.NoError(t, <-errs)
	}
	require.NoError(t, u.Commit())
	assert.Equal(t, int64(1), counts.Begins.Load())
	assert.Equal(t, 8, count(t, db, tbl))
}

// terminateIdle terminates every backend connected to db's database but
// the caller's, and waits until they are gone.
func terminateIdle(t *testing.T, db *sqlx.DB) {
	t.Helper()
	admin := pgtest.Open(t, "uow_admin")
	var name string
	require.NoError(t, db.Get(&name, `SELECT current_database()`))
	admin.MustExec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name)
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		require.NoError(t, admin.Get(&n, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, name))
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends survived pg_terminate_backend", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A pooled connection that broke while idle fails its next statement. A
// BEGIN is the first statement of a unit, so the unit tries another
// connection itself: the request never sees it, even without a retry
// policy. The backends are terminated (pg_terminate_backend: the drivers
// read the server's FATAL and report driver.ErrBadConn, which database/sql
// retries itself), or the connections are reset (TCP RST: the drivers pass
// "connection reset by peer" through when it comes after the BEGIN was
// sent, which only the unit retries).
func TestDeadPooledConnectionIsReplacedAtBegin(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		for _, how := range []string{"terminated", "reset", "reset during BEGIN"} {
			t.Run(drv+"/"+how, func(t *testing.T) {
				direct := pgtest.Open(t, "uow")
				tbl := newTable(t, direct)
				db, proxy := proxied(t, drv)
				db.SetMaxIdleConns(4)
				m := uow.New(db)
				// Four idle connections in the pool.
				var units []*uow.Unit
				for range 4 {
					ctx, u := m.Begin(context.Background())
					_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
					require.NoError(t, err)
					units = append(units, u)
				}
				for _, u := range units {
					require.NoError(t, u.Commit())
				}
				require.Equal(t, 4, db.Stats().Idle)
				switch how {
				case "terminated":
					terminateIdle(t, direct)
				case "reset":
					proxy.ResetAll()
				default:
					proxy.ResetNextBegins(3)
				}

				for i := range 3 {
					err := m.Do(context.Background(), func(ctx context.Context) error {
						return insert(ctx, db, tbl, how+string(rune('0'+i)))
					}, uow.NoRetry())
					require.NoError(t, err, "unit %d", i)
				}
				assert.Equal(t, 3, count(t, direct, tbl))
				assert.Zero(t, db.Stats().InUse)
			})
		}
	}
}

// When the unit's context ends while its COMMIT is in flight, the COMMIT is
// interrupted where the driver allows it (pgx), the connection is released,
// and the outcome is reported as unknown: the COMMIT was sent, and here the
// server did apply it.
func TestCancelDuringCommitIsUnknownAndReleasesTheConnection(t *testing.T) {
	direct := pgtest.Open(t, "uow")
	tbl := newTable(t, direct)
	db, proxy := proxied(t, "pgx")
	m := uow.New(db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, u := m.Begin(ctx)
	defer u.Rollback()
	require.NoError(t, insert(ctx, db, tbl, "sent"))
	proxy.StallCommitReply(true) // the server commits; its answer is held back
	defer proxy.StallCommitReply(false)
	done := make(chan error, 1)
	go func() { done <- u.Commit() }()
	<-proxy.Applied() // the COMMIT reached the server and was applied
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		proxy.CloseAll() // free the stuck Commit before failing
		t.Fatal("Commit waited for the held-back answer instead of its context")
	}
	require.ErrorIs(t, err, uow.ErrCommitUnknown)
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, db.Stats().InUse, "the connection was released")
	assert.Equal(t, 1, count(t, direct, tbl), "the unknown outcome was in fact a commit")
}

// A COMMIT that was never sent, because the context ended first, is a
// certain rollback, not an unknown outcome.
func TestCommitAfterCancelIsARollback(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)
	ctx, cancel := context.WithCancel(context.Background())
	ctx, u := m.Begin(ctx)
	require.NoError(t, insert(ctx, db, tbl, "x"))
	cancel()
	err := u.Commit()
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, uow.ErrCommitUnknown)
	assert.Zero(t, count(t, db, tbl))
	assert.Zero(t, db.Stats().InUse)
}

// A failed SAVEPOINT leaves the whole transaction aborted in PostgreSQL, so
// the outer unit must not stay committable: it rolls back with a definite
// outcome instead of sending a COMMIT that cannot succeed.
func TestFailedSavepointMarksTheOuterUnit(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)
	ctx, outer := m.Begin(context.Background())
	defer outer.Rollback()
	require.NoError(t, insert(ctx, db, tbl, "outer"))
	var pid int
	require.NoError(t, repo.From(ctx, db).GetContext(ctx, &pid, `SELECT pg_backend_pid()`))
	admin := pgtest.Open(t, "uow_admin")
	admin.MustExec(`SELECT pg_terminate_backend($1)`, pid)

	nctx, nested := m.Begin(ctx, uow.Propagate(uow.Nested))
	err := insert(nctx, db, tbl, "nested")
	require.Error(t, err, "the SAVEPOINT fails: the backend is gone")
	require.Contains(t, err.Error(), "savepoint")
	require.Error(t, nested.Commit())
	require.Error(t, outer.RollbackOnly(), "the outer unit is marked too")
	err = outer.Commit()
	require.ErrorIs(t, err, uow.ErrRollbackOnly)
	require.NotErrorIs(t, err, uow.ErrCommitUnknown, "no COMMIT was sent on the dead connection")
	assert.Zero(t, count(t, db, tbl))
}

// The wait for a statement's turn on a shared transaction honours the
// statement's context.
func TestWaitForTheTransactionHonoursTheStatementsContext(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	running := make(chan error, 1)
	go func() {
		_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT pg_sleep(2) /* holds the turn */`)
		running <- err
	}()
	pgtest.WaitRunning(t, db, "/* holds the turn */")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := repo.From(short, db).ExecContext(short, `SELECT 1`)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, u.RollbackOnly(), "nothing was sent: the unit is not doomed")
	select {
	case err := <-running:
		t.Fatalf("the waiting statement returned only after the running one: %v", err)
	default:
	}
	require.NoError(t, <-running)
	require.NoError(t, u.Commit())
}
