package uow_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// twoDBs are two PostgreSQL databases (two sources) with a table each, and
// the decisions table on the first.
type twoDBs struct {
	urlA, urlB string
	a, b       *sqlx.DB
	ta, tb     string
	prefix     string
}

var prefixSeq atomic.Int64

func setupTwoPhase(t *testing.T, drv string) twoDBs {
	t.Helper()
	pgtest.RequirePrepared(t)
	s := twoDBs{urlA: pgtest.URL(t, "2pc_a"), urlB: pgtest.URL(t, "2pc_b")}
	s.a, s.b = openDB(t, drv, s.urlA), openDB(t, drv, s.urlB)
	s.ta, s.tb = newTable(t, s.a), newTable(t, s.b)
	_, err := s.a.Exec(uow.TwoPhaseSchema(""))
	require.NoError(t, err)
	s.prefix = fmt.Sprintf("t%d_%d", os.Getpid(), prefixSeq.Add(1))
	admin := pgtest.AdminURL(t)
	t.Cleanup(func() {
		// Leave no prepared transaction behind: it would hold its locks,
		// and block dropping the databases.
		for _, u := range []string{s.urlA, s.urlB} {
			db := sqlx.MustOpen("postgres", u)
			var gids []string
			_ = db.Select(&gids, `SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND left(gid, length($1)) = $1`, s.prefix+".")
			for _, g := range gids {
				_, _ = db.Exec(`ROLLBACK PREPARED '` + g + `'`)
			}
			db.Close()
		}
		_ = admin
	})
	return s
}

func openDB(t *testing.T, drv, u string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open(drv, u)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.Zero(t, db.Stats().InUse, "connections still in use")
		db.Close()
	})
	return db
}

func (s twoDBs) manager(grace time.Duration, opts ...uow.ManagerOption) *uow.Manager {
	return s.managerOn(s.a, s.b, grace, opts...)
}

func (s twoDBs) managerOn(a, b *sqlx.DB, grace time.Duration, opts ...uow.ManagerOption) *uow.Manager {
	opts = append([]uow.ManagerOption{
		uow.WithSource("a", a), uow.WithSource("b", b),
		uow.TwoPhase(uow.TwoPhaseConfig{Prefix: s.prefix, Decisions: a, Grace: grace, FinishTimeout: time.Second}),
	}, opts...)
	return uow.New(nil, opts...)
}

// prepared counts this test's prepared transactions, on the whole server.
func (s twoDBs) prepared(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, s.a.Get(&n, `SELECT count(*) FROM pg_prepared_xacts WHERE left(gid, length($1)) = $1`, s.prefix+"."))
	return n
}

// rows counts the rows of both tables.
func (s twoDBs) rows(t *testing.T) (int, int) {
	t.Helper()
	return count(t, s.a, s.ta), count(t, s.b, s.tb)
}

// both inserts v into both tables through the unit in ctx.
func (s twoDBs) both(ctx context.Context, v string) error {
	if err := insert(ctx, s.a, s.ta, v); err != nil {
		return err
	}
	return insert(ctx, s.b, s.tb, v)
}

// An Atomic unit over two sources prepares both, records its decision and
// commits both; the AfterCommit hooks run after that, and nothing stays
// prepared.
func TestTwoPhaseCommits(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			s := setupTwoPhase(t, drv)
			ev := newEvents()
			m := s.manager(time.Minute, uow.WithObserver(ev))
			var hooks []string
			err := m.Do(context.Background(), func(ctx context.Context) error {
				_ = uow.AfterCommit(ctx, func(context.Context) error {
					a, b := s.rows(t)
					hooks = append(hooks, fmt.Sprintf("commit %d %d", a, b))
					return nil
				})
				return s.both(ctx, "x")
			}, uow.Atomic())
			require.NoError(t, err)
			assert.Equal(t, []string{"commit 1 1"}, hooks, "the hook runs once both are committed")
			a, b := s.rows(t)
			assert.Equal(t, [2]int{1, 1}, [2]int{a, b})
			assert.Zero(t, s.prepared(t))
			var decisions int
			require.NoError(t, s.a.Get(&decisions, `SELECT count(*) FROM `+uow.DefaultTwoPhaseTable+` WHERE left(gid, length($1)) = $1 AND commit`, s.prefix+"."))
			assert.Equal(t, 1, decisions, "the decision is recorded")
			var steps []string
			for _, e := range ev.drain() {
				if e.Statement != "" {
					require.NoError(t, e.Err, e.Statement)
					steps = append(steps, e.Statement+" "+e.Source)
				}
			}
			assert.Equal(t, []string{"PREPARE TRANSACTION a", "PREPARE TRANSACTION b", "decision a", "COMMIT PREPARED a", "COMMIT PREPARED b"}, steps)
		})
	}
}

// A source whose PREPARE fails (a deferred constraint, checked then) rolls
// back every source, the one already prepared included: a definite
// rollback, never a partial commit, and the AfterRollback hooks run.
func TestTwoPhaseFailedPrepareRollsBackAll(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			s := setupTwoPhase(t, drv)
			child := pgtest.DeferredFK(t, s.b)
			m := s.manager(time.Minute)
			var hooks []string
			calls := 0
			err := m.Do(context.Background(), func(ctx context.Context) error {
				calls++
				_ = uow.AfterRollback(ctx, func(context.Context) error { hooks = append(hooks, "rollback"); return nil })
				if err := insert(ctx, s.a, s.ta, "x"); err != nil {
					return err
				}
				_, err := uow.FromContext(ctx).On(s.b).ExecContext(ctx, `INSERT INTO `+child+` VALUES (42)`)
				return err
			}, uow.Atomic(), uow.Retry(fast))
			var ce *uow.CommitError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "b", ce.Failed)
			assert.Equal(t, []string{"a"}, ce.RolledBack)
			assert.Empty(t, ce.Committed)
			assert.NotErrorIs(t, err, uow.ErrPartialCommit)
			assert.NotErrorIs(t, err, uow.ErrCommitUnknown)
			code, _ := retry.SQLState(err)
			assert.Equal(t, "23503", code, "the PREPARE's own error: %v", err)
			assert.Equal(t, 1, calls, "a constraint violation is not retried")
			assert.Equal(t, []string{"rollback"}, hooks)
			a, _ := s.rows(t)
			assert.Zero(t, a, "the prepared source was rolled back")
			assert.Zero(t, s.prepared(t))
		})
	}
}

// A serialization failure at PREPARE (SSI checks a transaction's
// dependencies then, as at COMMIT) comes before any decision: the unit is
// rolled back everywhere, and a retrying Do runs it again.
func TestTwoPhaseRetriesAtPrepare(t *testing.T) {
	s := setupTwoPhase(t, "postgres")
	calls := 0
	var prepareErr error
	ev := uow.ObserverFunc(func(_ context.Context, e uow.Event) {
		if e.Statement == "PREPARE TRANSACTION" && e.Err != nil {
			prepareErr = e.Err
		}
	})
	m := s.manager(time.Minute, uow.WithObserver(ev))
	err := m.Do(context.Background(), func(ctx context.Context) error {
		calls++
		var n int
		if err := uow.FromContext(ctx).On(s.a).GetContext(ctx, &n, `SELECT count(*) FROM `+s.ta); err != nil {
			return err
		}
		if err := s.both(ctx, fmt.Sprint("unit", calls)); err != nil {
			return err
		}
		if calls == 1 {
			// A write skew: another serializable transaction reads what
			// the unit writes, writes what it read, and commits first.
			other, err := s.a.BeginTxx(context.Background(), &sql.TxOptions{Isolation: sql.LevelSerializable})
			require.NoError(t, err)
			require.NoError(t, other.Get(&n, `SELECT count(*) FROM `+s.ta))
			_, err = other.Exec(`INSERT INTO ` + s.ta + ` (v) VALUES ('other')`)
			require.NoError(t, err)
			require.NoError(t, other.Commit())
		}
		return nil
	}, uow.Atomic(), uow.Isolation(sql.LevelSerializable), uow.Retry(fast))
	require.NoError(t, err)
	code, _ := retry.SQLState(prepareErr)
	assert.Equal(t, "40001", code, "the first PREPARE failed: %v", prepareErr)
	assert.Equal(t, 2, calls)
	a, b := s.rows(t)
	assert.Equal(t, [2]int{2, 1}, [2]int{a, b}, "the other row and the second attempt's")
	assert.Zero(t, s.prepared(t))
}

// Nested units work inside the branches as before; a unit that used one
// source commits it plainly, with no PREPARE.
func TestTwoPhaseNestedAndOneSource(t *testing.T) {
	s := setupTwoPhase(t, "postgres")
	ev := newEvents()
	m := s.manager(time.Minute, uow.WithObserver(ev))
	err := m.Do(context.Background(), func(ctx context.Context) error {
		if err := s.both(ctx, "outer"); err != nil {
			return err
		}
		nerr := m.Do(ctx, func(ctx context.Context) error {
			if err := s.both(ctx, "inner"); err != nil {
				return err
			}
			return errors.New("undo the inner work")
		}, uow.Propagate(uow.Nested), uow.Atomic())
		require.Error(t, nerr)
		return insert(ctx, s.a, s.ta, "after")
	}, uow.Atomic())
	require.NoError(t, err)
	a, b := s.rows(t)
	assert.Equal(t, [2]int{2, 1}, [2]int{a, b})

	ev.drain()
	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		return insert(ctx, s.a, s.ta, "alone")
	}, uow.Atomic()))
	for _, e := range ev.drain() {
		assert.Empty(t, e.Statement, "one source: no two-phase step (%v)", e.Kind)
	}
	assert.Zero(t, s.prepared(t))
}

// Once the decision is durable, the unit is committed: a COMMIT PREPARED
// that cannot be sent leaves its source pending, the error says so
// (ErrCommitPending, not partial, never retried), no hook runs, and
// recovery by another process commits the rest.
func TestTwoPhasePendingUntilRecovered(t *testing.T) {
	s := setupTwoPhase(t, "postgres")
	b, err := sqlx.Open("postgres", s.urlB) // closed mid-commit below
	require.NoError(t, err)
	m := s.managerOn(s.a, b, time.Minute)
	defer uow.SetTwoPhaseStep(func(step, source string) {
		if step == "committed" && source == "a" {
			b.Close() // b's COMMIT PREPARED cannot get a connection
		}
	})()
	calls := 0
	var hooks []string
	err = m.Do(context.Background(), func(ctx context.Context) error {
		calls++
		_ = uow.AfterCommit(ctx, func(context.Context) error { hooks = append(hooks, "commit"); return nil })
		_ = uow.AfterRollback(ctx, func(context.Context) error { hooks = append(hooks, "rollback"); return nil })
		if err := insert(ctx, s.a, s.ta, "x"); err != nil {
			return err
		}
		return insert(ctx, b, s.tb, "x")
	}, uow.Atomic(), uow.Retry(everything()))
	require.ErrorIs(t, err, uow.ErrCommitPending)
	assert.NotErrorIs(t, err, uow.ErrPartialCommit)
	var ce *uow.CommitError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, []string{"a"}, ce.Committed)
	assert.Equal(t, []string{"b"}, ce.Pending)
	assert.True(t, ce.RetryUnsafe())
	assert.Equal(t, 1, calls, "never retried")
	assert.Empty(t, hooks)
	assert.Equal(t, 1, s.prepared(t), "b is still prepared")

	rec, err := s.manager(time.Minute).Recover(context.Background())
	require.NoError(t, err)
	assert.Len(t, rec.Committed, 1)
	assert.Empty(t, rec.RolledBack)
	ra, rb := s.rows(t)
	assert.Equal(t, [2]int{1, 1}, [2]int{ra, rb})
	assert.Zero(t, s.prepared(t))
}

// Recovery that finds a prepared transaction without a decision, older than
// its grace, records an abort first: the coordinator, still alive and slow,
// then cannot record its commit, and rolls back everywhere.
func TestTwoPhaseRecoveryDecidesFirst(t *testing.T) {
	s := setupTwoPhase(t, "postgres")
	m := s.manager(time.Minute)
	impatient := s.manager(time.Millisecond)
	var rec uow.Recovery
	var recErr error
	defer uow.SetTwoPhaseStep(func(step, source string) {
		if step == "prepared" && source == "b" {
			time.Sleep(5 * time.Millisecond) // older than the impatient grace
			rec, recErr = impatient.Recover(context.Background())
		}
	})()
	err := m.Do(context.Background(), func(ctx context.Context) error { return s.both(ctx, "x") }, uow.Atomic())
	require.NoError(t, recErr)
	assert.Len(t, rec.RolledBack, 2, "recovery rolled back both branches")
	var ce *uow.CommitError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), "recovery decided to roll back")
	assert.False(t, ce.Unknown)
	assert.Empty(t, ce.Committed)
	assert.ElementsMatch(t, []string{"a", "b"}, ce.RolledBack)
	a, b := s.rows(t)
	assert.Zero(t, a+b)
	assert.Zero(t, s.prepared(t))
}

// A coordinator that has not decided within Grace of its first PREPARE
// rolls back rather than race recovery.
func TestTwoPhaseSlowCoordinatorRollsBack(t *testing.T) {
	s := setupTwoPhase(t, "postgres")
	m := s.manager(50 * time.Millisecond)
	defer uow.SetTwoPhaseStep(func(step, source string) {
		if step == "prepared" && source == "b" {
			time.Sleep(100 * time.Millisecond)
		}
	})()
	err := m.Do(context.Background(), func(ctx context.Context) error { return s.both(ctx, "x") }, uow.Atomic())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "longer than Grace")
	a, b := s.rows(t)
	assert.Zero(t, a+b)
	assert.Zero(t, s.prepared(t))
}

// Misuse is reported clearly.
func TestTwoPhaseMisuse(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	err := m.Do(context.Background(), func(context.Context) error { return nil }, uow.Atomic())
	require.ErrorIs(t, err, uow.ErrInvalidOptions)
	_, err = m.Recover(context.Background())
	require.ErrorIs(t, err, uow.ErrInvalidOptions)

	assert.PanicsWithValue(t, `uow: TwoPhase: Prefix "no-dashes": want a letter, then up to 31 letters, digits or underscores`, func() {
		uow.TwoPhase(uow.TwoPhaseConfig{Prefix: "no-dashes", Decisions: db})
	})
	assert.Panics(t, func() {
		uow.New(db, uow.TwoPhase(uow.TwoPhaseConfig{Prefix: "app", Decisions: &sqlx.DB{}}))
	}, "Decisions must be a source")

	pgtest.RequirePrepared(t)
	m = uow.New(db, uow.TwoPhase(uow.TwoPhaseConfig{Prefix: "app", Decisions: db, Table: "no_such_table"}))
	_, err = m.Recover(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "uow.TwoPhaseSchema")

	// An atomic unit nested in one that is not is refused.
	m = uow.New(db, uow.TwoPhase(uow.TwoPhaseConfig{Prefix: "app", Decisions: db}))
	err = m.Do(context.Background(), func(ctx context.Context) error {
		return m.Do(ctx, func(context.Context) error { return nil }, uow.Atomic())
	})
	require.ErrorIs(t, err, uow.ErrIncompatible)
}

// The crash tests: a child process runs an Atomic unit and is killed
// (SIGKILL) at one point of the protocol; a fresh process then recovers.
// Every source ends committed, or every one rolled back, as the decision
// says, and nothing stays prepared.
func TestTwoPhaseCrashRecovery(t *testing.T) {
	for _, c := range []struct {
		step, source string
		committed    bool
	}{
		{"prepared", "a", false}, // after PREPARE on one source
		{"prepared", "b", false}, // after PREPARE on all of them
		{"decided", "", true},    // after the decision is recorded
		{"committed", "a", true}, // after the first COMMIT PREPARED
	} {
		t.Run(c.step+"_"+c.source, func(t *testing.T) {
			s := setupTwoPhase(t, "postgres")
			env := []string{
				"UOWKIT_2PC_URL_A=" + s.urlA, "UOWKIT_2PC_URL_B=" + s.urlB,
				"UOWKIT_2PC_TABLES=" + s.ta + "," + s.tb, "UOWKIT_2PC_PREFIX=" + s.prefix,
			}
			out, err := child(t, append(env, "UOWKIT_2PC_CHILD=unit", "UOWKIT_2PC_KILL="+c.step+":"+c.source))
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the child must die: %s", out)
			ws, ok := exit.Sys().(syscall.WaitStatus)
			require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "killed by SIGKILL: %v\n%s", err, out)
			assert.NotZero(t, s.prepared(t), "the crash left prepared transactions")

			out, err = child(t, append(env, "UOWKIT_2PC_CHILD=recover"))
			require.NoError(t, err, "recovery: %s", out)
			a, b := s.rows(t)
			want := 0
			if c.committed {
				want = 1
			}
			assert.Equal(t, [2]int{want, want}, [2]int{a, b}, "all or nothing, as decided")
			assert.Zero(t, s.prepared(t), "pg_prepared_xacts is empty")
		})
	}
}

// child runs this test binary's TestTwoPhaseChild with env.
func child(t *testing.T, env []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTwoPhaseChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTwoPhaseChild is the child process of TestTwoPhaseCrashRecovery.
func TestTwoPhaseChild(t *testing.T) {
	mode := os.Getenv("UOWKIT_2PC_CHILD")
	if mode == "" {
		t.Skip("the child process of TestTwoPhaseCrashRecovery")
	}
	s := twoDBs{urlA: os.Getenv("UOWKIT_2PC_URL_A"), urlB: os.Getenv("UOWKIT_2PC_URL_B"), prefix: os.Getenv("UOWKIT_2PC_PREFIX")}
	s.ta, s.tb, _ = strings.Cut(os.Getenv("UOWKIT_2PC_TABLES"), ",")
	s.a, s.b = openDB(t, "postgres", s.urlA), openDB(t, "postgres", s.urlB)
	switch mode {
	case "unit":
		kill := os.Getenv("UOWKIT_2PC_KILL")
		defer uow.SetTwoPhaseStep(func(step, source string) {
			if step+":"+source == kill {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // the signal is on its way
			}
		})()
		err := s.manager(time.Minute).Do(context.Background(), func(ctx context.Context) error { return s.both(ctx, "x") }, uow.Atomic())
		t.Fatalf("not killed at %s: %v", kill, err)
	case "recover":
		// A short grace: the coordinator is dead. Poll until nothing of
		// this prefix is left prepared.
		m := s.manager(200 * time.Millisecond)
		deadline := time.Now().Add(30 * time.Second)
		for {
			rec, err := m.Recover(context.Background())
			require.NoError(t, err)
			t.Logf("recovery: %+v", rec)
			if s.prepared(t) == 0 {
				return
			}
			require.True(t, time.Now().Before(deadline), "still prepared after 30 s")
			time.Sleep(50 * time.Millisecond)
		}
	}
}
