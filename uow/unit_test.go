package uow_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

func TestUnusedUnitMakesNoRoundTrip(t *testing.T) {
	db, counts := pgtest.OpenCounting(t, "uow")
	m := uow.New(db)
	ctx := context.Background()

	for range 100 {
		_, u := m.Begin(ctx)
		require.NoError(t, u.Commit())
		_, u = m.Begin(ctx)
		require.NoError(t, u.Rollback())
		require.NoError(t, m.Do(ctx, func(context.Context) error { return nil }))
		require.Error(t, m.Do(ctx, func(context.Context) error { return errors.New("no") }))
	}
	assert.Zero(t, counts.Total(), "an unused unit must not touch the database")
	assert.Zero(t, db.Stats().OpenConnections, "an unused unit must not even open a connection")
}

func TestUsedSourceBeginsOnce(t *testing.T) {
	db, counts := pgtest.OpenCounting(t, "uow")
	tbl := newTable(t, pgtest.Open(t, "uow"))
	m := uow.New(db)

	err := m.Do(context.Background(), func(ctx context.Context) error {
		for i := range 5 {
			if err := insert(ctx, db, tbl, fmt.Sprint(i)); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(1), counts.Begins.Load())
	assert.Equal(t, int64(1), counts.Commits.Load())
	assert.Equal(t, int64(0), counts.Rollbacks.Load())
	assert.Equal(t, int64(5), counts.Execs.Load())
	assert.Equal(t, 5, count(t, db, tbl))
}

func TestBeginCommitRollback(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)

	ctx, u := m.Begin(context.Background())
	require.NoError(t, insert(ctx, db, tbl, "a"))
	assert.Equal(t, 0, count(t, db, tbl), "uncommitted work is invisible outside the unit")
	require.NoError(t, u.Commit())
	require.NoError(t, u.Rollback(), "Rollback after Commit is a no-op")
	assert.Equal(t, 1, count(t, db, tbl))

	ctx, u = m.Begin(context.Background())
	require.NoError(t, insert(ctx, db, tbl, "b"))
	require.NoError(t, u.Rollback())
	require.NoError(t, u.Rollback())
	assert.Equal(t, 1, count(t, db, tbl))
}

func TestUseAfterFinish(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)

	ctx, u := m.Begin(context.Background())
	require.NoError(t, insert(ctx, db, tbl, "a"))
	require.NoError(t, u.Commit())

	err := insert(ctx, db, tbl, "late")
	require.ErrorIs(t, err, uow.ErrDone, "a finished unit must not fall back to autocommit")
	var n int
	require.ErrorIs(t, u.On(db).QueryRowxContext(ctx, `SELECT 1`).Scan(&n), uow.ErrDone)
	require.ErrorIs(t, u.Commit(), uow.ErrDone)
	require.ErrorIs(t, uow.AfterCommit(ctx, func(context.Context) error { return nil }), uow.ErrDone)
	assert.Equal(t, 1, count(t, db, tbl), "the late insert must not have been committed")

	// Never used, then finished: still no autocommit.
	ctx, u = m.Begin(context.Background())
	require.NoError(t, u.Rollback())
	require.ErrorIs(t, insert(ctx, db, tbl, "later"), uow.ErrDone)
	require.ErrorIs(t, u.Commit(), uow.ErrDone, "Commit after Rollback")
	assert.Equal(t, 1, count(t, db, tbl))
}

func TestDoCommitsRollsBackAndRepanics(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)
	ctx := context.Background()
	boom := errors.New("boom")

	require.NoError(t, m.Do(ctx, func(ctx context.Context) error { return insert(ctx, db, tbl, "ok") }))
	err := m.Do(ctx, func(ctx context.Context) error {
		require.NoError(t, insert(ctx, db, tbl, "err"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.PanicsWithValue(t, "kaboom", func() {
		_ = m.Do(ctx, func(ctx context.Context) error {
			require.NoError(t, insert(ctx, db, tbl, "panic"))
			panic("kaboom")
		})
	})
	var vs []string
	require.NoError(t, db.Select(&vs, `SELECT v FROM `+tbl))
	assert.Equal(t, []string{"ok"}, vs)
}

func TestTwoDatabasesCommitAndRollBackTogether(t *testing.T) {
	main, audit := pgtest.Open(t, "uow"), pgtest.Open(t, "uow_audit")
	tm, ta := newTable(t, main), newTable(t, audit)
	m := uow.New(main, uow.WithSource("audit", audit))
	ctx := context.Background()

	write := func(ctx context.Context, v string) error {
		if err := insert(ctx, main, tm, v); err != nil {
			return err
		}
		_, err := uow.FromContext(ctx).On(audit).ExecContext(ctx, `INSERT INTO `+ta+` (v) VALUES ($1)`, v)
		return err
	}
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error { return write(ctx, "a") }))
	require.Error(t, m.Do(ctx, func(ctx context.Context) error {
		require.NoError(t, write(ctx, "b"))
		return errors.New("rollback both")
	}))
	assert.Equal(t, 1, count(t, main, tm))
	assert.Equal(t, 1, count(t, audit, ta))
}

func TestCommitFailureIsReported(t *testing.T) {
	db := pgtest.Open(t, "uow")
	child := pgtest.DeferredFK(t, db)
	m := uow.New(db)
	var hooks []string
	err := m.Do(context.Background(), func(ctx context.Context) error {
		_, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO `+child+` (p) VALUES (42)`)
		require.NoError(t, err, "the deferred constraint is not checked yet")
		require.NoError(t, uow.AfterCommit(ctx, func(context.Context) error { hooks = append(hooks, "commit"); return nil }))
		require.NoError(t, uow.AfterRollback(ctx, func(context.Context) error { hooks = append(hooks, "rollback"); return nil }))
		return nil
	})
	var ce *uow.CommitError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, uow.DefaultSource, ce.Failed)
	assert.Empty(t, ce.Committed)
	assert.False(t, errors.Is(err, uow.ErrPartialCommit))
	var pqErr *pq.Error
	require.ErrorAs(t, err, &pqErr)
	assert.Equal(t, "23503", string(pqErr.Code))
	assert.Equal(t, []string{"rollback"}, hooks)
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM `+child))
	assert.Zero(t, n)
}

func TestPartialCommitIsReportedSourceBySource(t *testing.T) {
	a, b, c := pgtest.Open(t, "uow"), pgtest.Open(t, "uow_audit"), pgtest.Open(t, "uow_third")
	ta, tc := newTable(t, a), newTable(t, c)
	childB := pgtest.DeferredFK(t, b)
	m := uow.New(a, uow.WithSource("audit", b), uow.WithSource("third", c))

	err := m.Do(context.Background(), func(ctx context.Context) error {
		if err := insert(ctx, a, ta, "kept"); err != nil {
			return err
		}
		if _, err := repo.From(ctx, b).ExecContext(ctx, `INSERT INTO `+childB+` (p) VALUES (1)`); err != nil {
			return err
		}
		return insert(ctx, c, tc, "undone")
	})
	var ce *uow.CommitError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, []string{"default"}, ce.Committed)
	assert.Equal(t, "audit", ce.Failed)
	assert.Equal(t, []string{"third"}, ce.RolledBack)
	assert.ErrorIs(t, err, uow.ErrPartialCommit)
	assert.Contains(t, err.Error(), "PARTIAL COMMIT")
	assert.Equal(t, 1, count(t, a, ta), "the first source committed")
	assert.Equal(t, 0, count(t, c, tc), "the source after the failure rolled back")
}

func TestContextCancellationRollsBackAndReleases(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)

	parent, cancel := context.WithCancel(context.Background())
	ctx, u := m.Begin(parent)
	rolledBack := make(chan struct{})
	require.NoError(t, u.AfterRollback(func(context.Context) error { close(rolledBack); return nil }))
	require.NoError(t, insert(ctx, db, tbl, "a"))
	require.Equal(t, 1, db.Stats().InUse)

	cancel()
	<-rolledBack // the unit rolled back by itself: nobody called Rollback
	assert.Zero(t, db.Stats().InUse, "the connection went back to the pool")
	err := u.Commit()
	require.ErrorIs(t, err, uow.ErrDone)
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, count(t, db, tbl))
}

func TestCancelInterruptsRunningStatement(t *testing.T) {
	db := pgtest.Open(t, "uow")
	var mu sync.Mutex
	var failures []uow.Event
	m := uow.New(db, uow.WithObserver(uow.ObserverFunc(func(_ context.Context, e uow.Event) {
		if e.Err != nil && e.Kind != uow.EventUnit { // the unit itself failed: it was cancelled
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, e)
		}
	})))
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, u := m.Begin(parent)
	defer u.Rollback()

	done := make(chan error, 1)
	go func() {
		_, err := u.On(db).ExecContext(ctx, `SELECT pg_sleep(60) /* interrupted */`)
		done <- err
	}()
	// Cancel only once the server runs the statement: PostgreSQL ignores a
	// cancel request that arrives before the backend has read it, and
	// lib/pq sends it only once (see docs/semantics.md).
	pgtest.WaitRunning(t, db, "/* interrupted */")
	cancel()
	err := <-done
	require.Error(t, err, "the statement was interrupted, not run for 60 s")
	err = u.Commit()
	require.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, err.Error(), "bad connection", "the dropped connection took the transaction with it")
	mu.Lock()
	assert.Empty(t, failures, "no failed rollback reported: the server rolled back with the session")
	mu.Unlock()
	assert.Zero(t, db.Stats().InUse, "the connection went back to the pool")
}

func TestTimeoutRollsBackEvenForAForeignContext(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)

	_, u := m.Begin(context.Background(), uow.Timeout(time.Second)) // ample for the INSERT on a loaded machine
	// The handle is bound explicitly and used with a context that does not
	// carry the deadline: the unit's timeout must still interrupt it.
	h := u.On(db)
	_, err := h.ExecContext(context.Background(), `INSERT INTO `+tbl+` (v) VALUES ('a')`)
	require.NoError(t, err)
	_, err = h.ExecContext(context.Background(), `SELECT pg_sleep(60)`)
	require.Error(t, err)
	err = u.Commit()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, count(t, db, tbl))

	// The same for a statement that returns a cursor.
	_, u = m.Begin(context.Background(), uow.Timeout(200*time.Millisecond))
	_, err = u.On(db).QueryxContext(context.Background(), `SELECT pg_sleep(60)`)
	require.Error(t, err)
	require.ErrorIs(t, u.Commit(), context.DeadlineExceeded)
}

func TestReadOnlyIsEnforcedByTheDatabase(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)
	err := m.Do(context.Background(), func(ctx context.Context) error {
		return insert(ctx, db, tbl, "a")
	}, uow.ReadOnly())
	var pqErr *pq.Error
	require.ErrorAs(t, err, &pqErr)
	assert.Equal(t, "25006", string(pqErr.Code), "read_only_sql_transaction")
}

func TestIsolationLevelIsSet(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	for _, tc := range []struct {
		opts []uow.Option
		want string
		ro   string
	}{
		{nil, "read committed", "off"},
		{[]uow.Option{uow.Isolation(sql.LevelRepeatableRead)}, "repeatable read", "off"},
		{[]uow.Option{uow.Isolation(sql.LevelSerializable), uow.ReadOnly()}, "serializable", "on"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			var level, ro string
			require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
				q := repo.From(ctx, db)
				if err := q.GetContext(ctx, &level, `SHOW transaction_isolation`); err != nil {
					return err
				}
				return q.GetContext(ctx, &ro, `SHOW transaction_read_only`)
			}, tc.opts...))
			assert.Equal(t, tc.want, level)
			assert.Equal(t, tc.ro, ro)
		})
	}
}

func txid(t *testing.T, ctx context.Context, q repo.Querier) int64 {
	t.Helper()
	var id int64
	require.NoError(t, q.GetContext(ctx, &id, `SELECT txid_current()`))
	return id
}

func TestJoinSharesTheTransactionAndFailureMarksRollbackOnly(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)

	ctx, outer := m.Begin(context.Background())
	defer outer.Rollback()
	outerID := txid(t, ctx, repo.From(ctx, db))
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		assert.Equal(t, outerID, txid(t, ctx, repo.From(ctx, db)), "joined work runs in the outer transaction")
		return insert(ctx, db, tbl, "joined")
	}))
	assert.Zero(t, count(t, db, tbl), "a joined Do does not commit by itself")

	innerErr := errors.New("inner failed")
	require.ErrorIs(t, m.Do(ctx, func(ctx context.Context) error { return innerErr }), innerErr)
	// The caller swallows the error and tries to commit: that must not commit
	// half the work.
	err := outer.Commit()
	require.ErrorIs(t, err, uow.ErrRollbackOnly)
	assert.Zero(t, count(t, db, tbl))
}

func TestStatementErrorMarksRollbackOnlyOutsideSavepoints(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)

	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	require.NoError(t, insert(ctx, db, tbl, "dup"))
	err := insert(ctx, db, tbl, "dup")
	var pqErr *pq.Error
	require.ErrorAs(t, err, &pqErr)
	assert.Equal(t, "23505", string(pqErr.Code))
	require.Error(t, u.RollbackOnly())
	require.ErrorIs(t, u.Commit(), uow.ErrRollbackOnly)
	assert.Zero(t, count(t, db, tbl))

	// sql.ErrNoRows is an answer, not a failure.
	ctx, u = m.Begin(context.Background())
	var v string
	require.ErrorIs(t, repo.From(ctx, db).GetContext(ctx, &v, `SELECT v FROM `+tbl+` WHERE false`), sql.ErrNoRows)
	require.NoError(t, u.Commit())
}

func TestNestedRollsBackToItsSavepoint(t *testing.T) {
	db, counts := pgtest.OpenCounting(t, "uow")
	tbl := newTable(t, pgtest.Open(t, "uow"))
	m := uow.New(db)
	var hooks []string
	hook := func(name string) uow.Hook {
		return func(context.Context) error { hooks = append(hooks, name); return nil }
	}

	err := m.Do(context.Background(), func(ctx context.Context) error {
		require.NoError(t, insert(ctx, db, tbl, "outer"))
		// A unique violation inside the savepoint aborts only the savepoint.
		err := m.Do(ctx, func(ctx context.Context) error {
			require.NoError(t, uow.AfterCommit(ctx, hook("nested-failed-commit")))
			require.NoError(t, uow.AfterRollback(ctx, hook("nested-failed-rollback")))
			return insert(ctx, db, tbl, "outer")
		}, uow.Propagate(uow.Nested))
		require.Error(t, err)
		require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
			require.NoError(t, uow.AfterCommit(ctx, hook("nested-ok-commit")))
			return insert(ctx, db, tbl, "nested")
		}, uow.Propagate(uow.Nested)))
		return uow.AfterCommit(ctx, hook("outer-commit"))
	})
	require.NoError(t, err, "the outer unit commits after its nested unit rolled back")
	var vs []string
	require.NoError(t, db.Select(&vs, `SELECT v FROM `+tbl+` ORDER BY id`))
	assert.Equal(t, []string{"outer", "nested"}, vs)
	assert.Equal(t, []string{"nested-failed-rollback", "nested-ok-commit", "outer-commit"}, hooks)
	assert.Equal(t, int64(1), counts.Begins.Load())
}

func TestNestedSavepointIsLazy(t *testing.T) {
	db, counts := pgtest.OpenCounting(t, "uow")
	m := uow.New(db)
	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	_, err := u.On(db).ExecContext(ctx, `SELECT 1`)
	require.NoError(t, err)
	before := counts.Execs.Load()
	require.NoError(t, m.Do(ctx, func(context.Context) error { return nil }, uow.Propagate(uow.Nested)))
	require.Error(t, m.Do(ctx, func(context.Context) error { return errors.New("x") }, uow.Propagate(uow.Nested)))
	assert.Equal(t, before, counts.Execs.Load(), "a nested unit that touches nothing creates no savepoint")
	require.NoError(t, u.Commit())
}

func TestRequiresNewIsIndependent(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)

	ctx, outer := m.Begin(context.Background())
	outerID := txid(t, ctx, repo.From(ctx, db))
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		assert.NotEqual(t, outerID, txid(t, ctx, repo.From(ctx, db)))
		return insert(ctx, db, tbl, "independent")
	}, uow.Propagate(uow.RequiresNew)))
	require.NoError(t, insert(ctx, db, tbl, "outer"))
	require.NoError(t, outer.Rollback())
	var vs []string
	require.NoError(t, db.Select(&vs, `SELECT v FROM `+tbl))
	assert.Equal(t, []string{"independent"}, vs)
}

func TestMandatory(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	called := false
	err := m.Do(context.Background(), func(context.Context) error { called = true; return nil }, uow.Propagate(uow.Mandatory))
	require.ErrorIs(t, err, uow.ErrNoUnit)
	assert.False(t, called)

	ctx, u := m.Begin(context.Background(), uow.Propagate(uow.Mandatory))
	require.ErrorIs(t, u.Err(), uow.ErrNoUnit)
	_, err = repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrNoUnit, "a repository under a failed unit fails, never autocommits")
	require.ErrorIs(t, u.Commit(), uow.ErrNoUnit)

	ctx, outer := m.Begin(context.Background())
	defer outer.Rollback()
	require.ErrorIs(t, m.Do(ctx, func(ctx context.Context) error {
		inner := uow.FromContext(ctx)
		assert.NotSame(t, outer, inner)
		require.NoError(t, inner.SetRollbackOnly())
		assert.ErrorIs(t, outer.RollbackOnly(), uow.ErrRollbackRequested, "the mandatory unit joined the outer one")
		return nil
	}, uow.Propagate(uow.Mandatory)), uow.ErrRollbackOnly)
}

func TestIncompatibleJoinIsAnError(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	for _, tc := range []struct {
		name         string
		outer, inner []uow.Option
		ok           bool
	}{
		{"read-only inside read-write", nil, []uow.Option{uow.ReadOnly()}, false},
		{"serializable inside default", nil, []uow.Option{uow.Isolation(sql.LevelSerializable)}, false},
		{"serializable inside repeatable read", []uow.Option{uow.Isolation(sql.LevelRepeatableRead)}, []uow.Option{uow.Isolation(sql.LevelSerializable)}, false},
		{"repeatable read inside serializable", []uow.Option{uow.Isolation(sql.LevelSerializable)}, []uow.Option{uow.Isolation(sql.LevelRepeatableRead)}, true},
		{"read-write inside read-only", []uow.Option{uow.ReadOnly()}, nil, true},
		{"read-only nested inside read-only", []uow.Option{uow.ReadOnly()}, []uow.Option{uow.ReadOnly(), uow.Propagate(uow.Nested)}, true},
		{"serializable nested inside default", nil, []uow.Option{uow.Isolation(sql.LevelSerializable), uow.Propagate(uow.Nested)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, outer := m.Begin(context.Background(), tc.outer...)
			defer outer.Rollback()
			err := m.Do(ctx, func(context.Context) error { return nil }, tc.inner...)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, uow.ErrIncompatible)
			}
		})
	}
}

func TestHooks(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	ev := newEvents()
	m := uow.New(db, uow.WithObserver(ev))

	var seen []string
	var rowsAtHook int
	err := m.Do(context.Background(), func(ctx context.Context) error {
		require.NoError(t, insert(ctx, db, tbl, "a"))
		require.NoError(t, uow.AfterCommit(ctx, func(context.Context) error {
			rowsAtHook = count(t, db, tbl) // another connection sees the commit
			seen = append(seen, "1")
			return nil
		}))
		require.NoError(t, uow.AfterCommit(ctx, func(context.Context) error { panic("hook panic") }))
		require.NoError(t, uow.AfterCommit(ctx, func(context.Context) error { return errors.New("hook error") }))
		require.NoError(t, uow.AfterCommit(ctx, func(context.Context) error { seen = append(seen, "4"); return nil }))
		require.NoError(t, uow.AfterRollback(ctx, func(context.Context) error { seen = append(seen, "rollback"); return nil }))
		return nil
	})
	require.NoError(t, err, "hook failures do not change the outcome")
	assert.Equal(t, []string{"1", "4"}, seen, "a failing hook does not stop the others")
	assert.Equal(t, 1, rowsAtHook)

	var hookErrs []*uow.HookError
	for _, e := range ev.drain() {
		if e.Kind == uow.EventHookError {
			var he *uow.HookError
			require.ErrorAs(t, e.Err, &he)
			hookErrs = append(hookErrs, he)
		}
	}
	require.Len(t, hookErrs, 2)
	assert.Equal(t, "hook panic", hookErrs[0].Panic)
	assert.Equal(t, 1, hookErrs[0].Index)
	assert.EqualError(t, hookErrs[1].Err, "hook error")

	seen = nil
	_ = m.Do(context.Background(), func(ctx context.Context) error {
		require.NoError(t, uow.AfterCommit(ctx, func(context.Context) error { seen = append(seen, "commit"); return nil }))
		require.NoError(t, uow.AfterRollback(ctx, func(context.Context) error { seen = append(seen, "rollback"); return nil }))
		return errors.New("fail")
	})
	assert.Equal(t, []string{"rollback"}, seen)
	require.ErrorIs(t, uow.AfterCommit(context.Background(), func(context.Context) error { return nil }), uow.ErrNoUnit)
}

func TestSetRollbackOnly(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)
	err := m.Do(context.Background(), func(ctx context.Context) error {
		require.NoError(t, insert(ctx, db, tbl, "a"))
		return uow.SetRollbackOnly(ctx)
	})
	require.ErrorIs(t, err, uow.ErrRollbackOnly)
	require.ErrorIs(t, err, uow.ErrRollbackRequested)
	assert.Zero(t, count(t, db, tbl))
}

func TestConcurrentGoroutinesShareAUnit(t *testing.T) {
	db, counts := pgtest.OpenCounting(t, "uow")
	tbl := newTable(t, pgtest.Open(t, "uow"))
	m := uow.New(db)
	err := m.Do(context.Background(), func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		for i := range 32 {
			g.Go(func() error {
				if err := insert(ctx, db, tbl, fmt.Sprint(i)); err != nil {
					return err
				}
				var n int
				return repo.From(ctx, db).GetContext(ctx, &n, `SELECT count(*) FROM `+tbl)
			})
		}
		return g.Wait()
	})
	require.NoError(t, err)
	assert.Equal(t, 32, count(t, db, tbl))
	assert.Equal(t, int64(1), counts.Begins.Load(), "concurrent first uses begin one transaction")
}

func TestOpenCursorMakesTheTransactionBusy(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	q := repo.From(ctx, db)

	rows, err := q.QueryxContext(ctx, `SELECT generate_series(1, 1000)`)
	require.NoError(t, err)
	_, err = q.ExecContext(ctx, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrBusy)
	var n int
	require.ErrorIs(t, q.QueryRowxContext(ctx, `SELECT 1`).Scan(&n), uow.ErrBusy)
	require.NoError(t, rows.Close())

	row := q.QueryRowxContext(ctx, `SELECT 7`)
	require.NoError(t, row.Scan(&n), "a row is closed by Scan")
	assert.Equal(t, 7, n)
	_, err = q.ExecContext(ctx, `SELECT 1`)
	require.NoError(t, err)
	// ErrBusy sent nothing, so it does not doom the unit's work.
	require.NoError(t, u.RollbackOnly())
	require.NoError(t, u.Commit())
}

func TestNestedUnitsMayNotOverlapOnOneSource(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	ctx, u := m.Begin(context.Background())
	defer u.Rollback()
	ctxA, a := m.Begin(ctx, uow.Propagate(uow.Nested))
	ctxB, b := m.Begin(ctx, uow.Propagate(uow.Nested))
	_, err := repo.From(ctxA, db).ExecContext(ctxA, `SELECT 1`)
	require.NoError(t, err)
	_, err = repo.From(ctxB, db).ExecContext(ctxB, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrNestedOverlap)
	require.NoError(t, a.Commit())
	require.NoError(t, b.Rollback())
}

func TestPinnedConnIsReleasedWithTheUnit(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	const key = 4242
	ctx, u := m.Begin(context.Background())
	_, err := u.Conn(ctx, nil)
	require.ErrorIs(t, err, uow.ErrUnknownSource)
	c, err := u.Conn(ctx, db)
	require.NoError(t, err)
	_, err = c.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key)
	require.NoError(t, err)
	require.NoError(t, u.Commit())

	var locked bool
	require.NoError(t, db.Get(&locked, `SELECT pg_try_advisory_lock($1)`, key))
	assert.True(t, locked, "the session lock went away with the unit's connection")
	_, err = db.Exec(`SELECT pg_advisory_unlock_all()`)
	require.NoError(t, err)
}

func TestConcurrentUnitsDoNotLeak(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	m := uow.New(db)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_ = m.Do(ctx, func(ctx context.Context) error {
				if err := insert(ctx, db, tbl, fmt.Sprint(i)); err != nil {
					return err
				}
				if i%3 == 0 {
					cancel()
				}
				if i%2 == 0 {
					return errors.New("even")
				}
				return nil
			})
		})
	}
	wg.Wait()
	assert.Zero(t, db.Stats().InUse)
}

// TestCommitRacingCancellationIsDecidedOnce cancels the unit's context at
// every moment around Commit, on two sources: whatever the interleaving,
// Commit's answer must match what both databases kept (nil: both rows; an
// error: neither, unless it reports the first source committed and the
// second's COMMIT interrupted in flight), and it never reports success for
// work that was rolled back.
func TestCommitRacingCancellationIsDecidedOnce(t *testing.T) {
	a, b := pgtest.Open(t, "uow"), pgtest.Open(t, "uow_b")
	ta, tb := newTable(t, a), newTable(t, b)
	m := uow.New(a, uow.WithSource("b", b))
	outcomes := map[bool]int{}
	partial := 0
	for i := range 200 {
		v := fmt.Sprint(i)
		parent, cancel := context.WithCancel(context.Background())
		ctx, u := m.Begin(parent)
		require.NoError(t, insert(ctx, a, ta, v))
		require.NoError(t, insert(ctx, b, tb, v))
		start := make(chan struct{})
		go func() {
			<-start
			for range i % 50 { // spread the cancel over the commit
				runtime.Gosched()
			}
			cancel()
		}()
		close(start)
		err := u.Commit()
		cancel()
		var inA, inB int
		require.NoError(t, a.Get(&inA, `SELECT count(*) FROM `+ta+` WHERE v = $1`, v))
		require.NoError(t, b.Get(&inB, `SELECT count(*) FROM `+tb+` WHERE v = $1`, v))
		var ce *uow.CommitError
		switch {
		case err == nil:
			require.Equal(t, [2]int{1, 1}, [2]int{inA, inB}, "attempt %d: Commit said yes", i)
		case errors.As(err, &ce) && len(ce.Committed) > 0:
			// The cancel came after the first source committed and
			// interrupted the second's COMMIT in flight (rare; seen on a
			// loaded machine): the report must say so, and match.
			require.Equal(t, []string{uow.DefaultSource}, ce.Committed, "attempt %d: %v", i, err)
			require.Equal(t, 1, inA, "attempt %d: %v", i, err)
			if !ce.Unknown {
				require.Zero(t, inB, "attempt %d: %v", i, err)
			}
			partial++
		default:
			require.ErrorIs(t, err, context.Canceled, "attempt %d", i)
			require.Equal(t, [2]int{0, 0}, [2]int{inA, inB}, "attempt %d: Commit said %v", i, err)
		}
		outcomes[err == nil]++
	}
	assert.Zero(t, a.Stats().InUse+b.Stats().InUse)
	t.Logf("committed %d, failed %d (of which partial or unknown, as reported: %d)", outcomes[true], outcomes[false], partial)
}

func TestBadInput(t *testing.T) {
	m := uow.New(nil)
	ctx, u := m.Begin(context.Background())
	_, err := u.On(nil).ExecContext(ctx, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrUnknownSource)
	_, err = u.On(sqlx.NewDb(nil, "postgres")).ExecContext(ctx, `SELECT 1`)
	require.ErrorIs(t, err, uow.ErrUnknownSource)
	require.Error(t, m.Do(ctx, nil))
	require.Error(t, u.AfterCommit(nil))
	require.NoError(t, u.Commit())
	require.PanicsWithValue(t, `uow: WithSource("x"): nil database`, func() { uow.New(nil, uow.WithSource("x", nil)) })
}

func TestTimeoutContextEndsWithTheUnit(t *testing.T) {
	m := uow.New(nil)
	for name, finish := range map[string]func(u *uow.Unit) error{
		"commit":   (*uow.Unit).Commit,
		"rollback": (*uow.Unit).Rollback,
	} {
		t.Run(name, func(t *testing.T) {
			ctx, u := m.Begin(context.Background(), uow.Timeout(time.Hour))
			_, ok := ctx.Deadline()
			require.True(t, ok, "the unit's context carries the deadline")
			require.NoError(t, ctx.Err())
			require.NoError(t, finish(u))
			assert.ErrorIs(t, ctx.Err(), context.Canceled, "the timer is released with the unit")

			plain, u := m.Begin(context.Background())
			require.NoError(t, finish(u))
			assert.NoError(t, plain.Err(), "without Timeout the unit's context is the caller's")
		})
	}
}
