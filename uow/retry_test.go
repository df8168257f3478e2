package uow_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/faultproxy"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// raise40001 makes the server raise a real serialization_failure.
const raise40001 = `DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`

// fast retries quickly but long enough to outlast a competing transaction
// on a loaded machine: exhausting it would fail a test that is about
// something else.
var fast = retry.Policy{BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxAttempts: 50}

// retries counts EventRetry observations.
type retries struct{ n atomic.Int64 }

func (r *retries) Start(ctx context.Context, _ uow.Event) context.Context { return ctx }

func (r *retries) End(_ context.Context, e uow.Event) {
	if e.Kind == uow.EventRetry {
		r.n.Add(1)
	}
}

func TestSerializableDoRetriesARealSerializationFailure(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	obs := &retries{}
	m := uow.New(db, uow.WithObserver(obs))

	// Classic write skew: both read the count, then both insert. On the first
	// attempt both have read before either writes, so one must fail with
	// 40001; the retry sees the other's row.
	var firstReads sync.WaitGroup
	firstReads.Add(2)
	var hooks atomic.Int64
	run := func(v string) error {
		attempt := 0
		return m.Do(context.Background(), func(ctx context.Context) error {
			attempt++
			q := repo.From(ctx, db)
			var n int
			if err := q.GetContext(ctx, &n, `SELECT count(*) FROM `+tbl); err != nil {
				return err
			}
			if attempt == 1 {
				firstReads.Done()
				firstReads.Wait()
			}
			if err := uow.AfterCommit(ctx, func(context.Context) error { hooks.Add(1); return nil }); err != nil {
				return err
			}
			_, err := q.ExecContext(ctx, `INSERT INTO `+tbl+` (v) VALUES ($1)`, v)
			return err
		}, uow.Isolation(sql.LevelSerializable)) // retried by default
	}
	errs := make(chan error, 2)
	go func() { errs <- run("a") }()
	go func() { errs <- run("b") }()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	assert.Equal(t, 2, count(t, db, tbl))
	assert.GreaterOrEqual(t, obs.n.Load(), int64(1), "at least one attempt was retried")
	assert.Equal(t, int64(2), hooks.Load(), "after-commit hooks of failed attempts never run")
}

// crossedTransfers runs two Do calls that update rows 1 and 2 of tbl in
// opposite orders, waiting for each other after their first update on the
// first attempt: a real deadlock, which the database breaks by failing one of
// them. It returns how many retries the observer saw.
func crossedTransfers(t *testing.T, db *sqlx.DB, tbl string, setup ...string) int64 {
	t.Helper()
	db.MustExec(`INSERT INTO ` + tbl + ` (id, v) VALUES (1, 0), (2, 0)`)
	obs := &retries{}
	m := uow.New(db, uow.WithObserver(obs))
	var locked sync.WaitGroup
	locked.Add(2)
	update := db.Rebind(`UPDATE ` + tbl + ` SET v = v + 1 WHERE id = ?`)
	transfer := func(first, second int) error {
		attempt := 0
		return m.Do(context.Background(), func(ctx context.Context) error {
			attempt++
			q := repo.From(ctx, db)
			for _, s := range setup {
				if _, err := q.ExecContext(ctx, s); err != nil {
					return err
				}
			}
			if _, err := q.ExecContext(ctx, update, first); err != nil {
				return err
			}
			if attempt == 1 {
				locked.Done()
				locked.Wait() // both hold their first row: opposite orders deadlock
			}
			_, err := q.ExecContext(ctx, update, second)
			return err
		}, uow.Retry(fast))
	}
	errs := make(chan error, 2)
	go func() { errs <- transfer(1, 2) }()
	go func() { errs <- transfer(2, 1) }()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	var total int
	require.NoError(t, db.Get(&total, `SELECT sum(v) FROM `+tbl))
	assert.Equal(t, 4, total, "both transfers applied exactly once")
	return obs.n.Load()
}

func TestDoRetriesARealDeadlock(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := pgtest.Table(t, db, "accounts", `id int PRIMARY KEY, v int`)
	n := crossedTransfers(t, db, tbl, `SET LOCAL deadlock_timeout = '20ms'`)
	assert.GreaterOrEqual(t, n, int64(1), "the deadlock (40P01) was retried")
}

func TestRetryExhaustedKeepsTheCause(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	calls := 0
	p := fast
	p.MaxAttempts = 3
	err := m.Do(context.Background(), func(ctx context.Context) error {
		calls++
		_, err := repo.From(ctx, db).ExecContext(ctx, raise40001)
		return err
	}, uow.Retry(p))
	var ex *retry.ExhaustedError
	require.ErrorAs(t, err, &ex)
	assert.Equal(t, 3, calls)
	code, _ := retry.SQLState(err)
	assert.Equal(t, "40001", code)
}

func TestRetryIsOptInOrSerializable(t *testing.T) {
	db := pgtest.Open(t, "uow")
	for name, tc := range map[string]struct {
		m     *uow.Manager
		opts  []uow.Option
		calls int
	}{
		"read committed: no retry":        {uow.New(db), nil, 1},
		"serializable: retried":           {uow.New(db), []uow.Option{uow.Isolation(sql.LevelSerializable)}, retry.DefaultMaxAttempts},
		"serializable with NoRetry":       {uow.New(db), []uow.Option{uow.Isolation(sql.LevelSerializable), uow.NoRetry()}, 1},
		"manager default Retry":           {uow.New(db, uow.WithDefaults(uow.Retry(retry.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond}))), nil, 2},
		"per call Retry":                  {uow.New(db), []uow.Option{uow.Retry(retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond})}, 3},
		"per call NoRetry beats defaults": {uow.New(db, uow.WithDefaults(uow.Retry(fast))), []uow.Option{uow.NoRetry()}, 1},
	} {
		t.Run(name, func(t *testing.T) {
			calls := 0
			err := tc.m.Do(context.Background(), func(ctx context.Context) error {
				calls++
				_, err := repo.From(ctx, db).ExecContext(ctx, raise40001)
				return err
			}, tc.opts...)
			require.Error(t, err)
			assert.Equal(t, tc.calls, calls)
		})
	}
}

func TestOnlyTheOutermostUnitRetries(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	outer, inner := 0, 0
	err := m.Do(context.Background(), func(ctx context.Context) error {
		outer++
		return m.Do(ctx, func(ctx context.Context) error {
			inner++
			if outer < 3 {
				_, err := repo.From(ctx, db).ExecContext(ctx, raise40001)
				return err
			}
			return nil
		}, uow.Retry(fast)) // joined: must not retry on its own
	}, uow.Retry(fast))
	require.NoError(t, err)
	assert.Equal(t, 3, outer)
	assert.Equal(t, 3, inner, "the joined Do ran once per outer attempt")
}

func TestCancelDuringBackoffReturnsPromptly(t *testing.T) {
	db := pgtest.Open(t, "uow")
	m := uow.New(db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := retry.Policy{BaseDelay: time.Hour, MaxDelay: time.Hour}
	p.OnRetry = func(context.Context, int, time.Duration, error) { cancel() }
	err := m.Do(ctx, func(ctx context.Context) error {
		_, err := repo.From(ctx, db).ExecContext(ctx, raise40001)
		return err
	}, uow.Retry(p))
	require.ErrorIs(t, err, context.Canceled)
	code, _ := retry.SQLState(err)
	assert.Equal(t, "40001", code, "the last attempt's error is kept")
}

// proxied opens the uow test database through a fault proxy, with the
// database/sql driver drv ("postgres" for lib/pq, "pgx").
func proxied(t *testing.T, drv string) (*sqlx.DB, *faultproxy.Proxy) {
	t.Helper()
	p := faultproxy.Start(t, "127.0.0.1:5432")
	u, err := url.Parse(pgtest.URL(t, "uow"))
	require.NoError(t, err)
	u.Host = p.Addr()
	db, err := sqlx.Open(drv, u.String())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db, p
}

// everything is a policy that would retry any error at all: only the
// RetryUnsafe guard can stop it.
func everything() retry.Policy {
	p := fast
	p.Classifiers = []retry.Classifier{func(error) bool { return true }}
	return p
}

func TestCommitOutcomeUnknownIsReportedAndNeverRetried(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			direct := pgtest.Open(t, "uow")
			tbl := newTable(t, direct)
			db, proxy := proxied(t, drv)
			m := uow.New(db)
			calls := 0
			var hooks []string
			err := m.Do(context.Background(), func(ctx context.Context) error {
				calls++
				if err := insert(ctx, db, tbl, fmt.Sprint("maybe", calls)); err != nil {
					return err
				}
				_ = uow.AfterCommit(ctx, func(context.Context) error { hooks = append(hooks, "commit"); return nil })
				_ = uow.AfterRollback(ctx, func(context.Context) error { hooks = append(hooks, "rollback"); return nil })
				proxy.DropCommitReply(true) // the server will commit; the client never hears it
				return nil
			}, uow.Retry(everything()))
			require.ErrorIs(t, err, uow.ErrCommitUnknown)
			var ce *uow.CommitError
			require.ErrorAs(t, err, &ce)
			assert.True(t, ce.Unknown)
			assert.Equal(t, 1, calls, "an unknown outcome is never retried, whatever the classifiers say")
			assert.Empty(t, hooks, "neither hook runs: the work is neither known committed nor known rolled back")
			assert.Equal(t, 1, count(t, direct, tbl), "the row is in fact committed")
		})
	}
}

func TestPartialCommitIsNeverRetried(t *testing.T) {
	a, b := pgtest.Open(t, "uow"), pgtest.Open(t, "uow_audit")
	ta, tb := newTable(t, a), newTable(t, b)
	m := uow.New(a, uow.WithSource("audit", b))

	// Source "audit" fails at COMMIT with a real 40001 (write skew against a
	// transaction the test commits first), after "default" committed: the
	// cause is retryable, the outcome is not.
	other, err := b.BeginTxx(context.Background(), &sql.TxOptions{Isolation: sql.LevelSerializable})
	require.NoError(t, err)
	defer other.Rollback()
	var n int
	require.NoError(t, other.Get(&n, `SELECT count(*) FROM `+tb))
	calls := 0
	var hooks []string
	err = m.Do(context.Background(), func(ctx context.Context) error {
		calls++
		if err := insert(ctx, a, ta, fmt.Sprint("kept", calls)); err != nil {
			return err
		}
		q := repo.From(ctx, b)
		if err := q.GetContext(ctx, &n, `SELECT count(*) FROM `+tb); err != nil {
			return err
		}
		if err := insert(ctx, b, tb, fmt.Sprint("mine", calls)); err != nil {
			return err
		}
		if calls == 1 {
			_, err := other.Exec(`INSERT INTO ` + tb + ` (v) VALUES ('theirs')`)
			require.NoError(t, err)
			require.NoError(t, other.Commit())
		}
		_ = uow.AfterRollback(ctx, func(context.Context) error { hooks = append(hooks, "rollback"); return nil })
		return nil
	}, uow.Isolation(sql.LevelSerializable), uow.Retry(everything()))
	require.ErrorIs(t, err, uow.ErrPartialCommit)
	code, _ := retry.SQLState(err)
	assert.Equal(t, "40001", code, "the cause alone would have been retried")
	assert.Equal(t, 1, calls, "a partial commit is never retried")
	assert.Equal(t, 1, count(t, a, ta), "the first source's work is durable, once")
	assert.Empty(t, hooks, "after-rollback hooks do not run: part of the work committed")
}

func TestRetryEventsCarryAttemptDelayAndCause(t *testing.T) {
	db := pgtest.Open(t, "uow")
	ev := newEvents()
	m := uow.New(db, uow.WithObserver(ev))
	type seen struct {
		attempt int
		delay   time.Duration
	}
	var onRetry []seen
	p := fast
	p.MaxAttempts = 3
	p.OnRetry = func(_ context.Context, attempt int, delay time.Duration, _ error) {
		onRetry = append(onRetry, seen{attempt, delay})
	}
	err := m.Do(context.Background(), func(ctx context.Context) error {
		_, err := repo.From(ctx, db).ExecContext(ctx, raise40001)
		return err
	}, uow.Retry(p))
	require.ErrorAs(t, err, new(*retry.ExhaustedError))
	var got []seen
	for _, e := range ev.drain() {
		if e.Kind != uow.EventRetry {
			continue
		}
		code, _ := retry.SQLState(e.Err)
		assert.Equal(t, "40001", code, "the event carries the failed attempt's error")
		got = append(got, seen{e.Attempt, e.Delay})
	}
	assert.Equal(t, []seen{{1, onRetry[0].delay}, {2, onRetry[1].delay}}, got,
		"one event per retry, with the attempt that failed and the delay slept")
}

func TestConnectionErrorAtBeginIsRetried(t *testing.T) {
	direct := pgtest.Open(t, "uow")
	tbl := newTable(t, direct)
	db, proxy := proxied(t, "postgres")
	db.SetMaxIdleConns(0) // every BEGIN dials a new connection through the proxy
	m := uow.New(db)
	// The first connection attempts are cut during start-up: the unit
	// tries another connection itself (one more than the pool's idle ones),
	// then Do re-runs the callback.
	proxy.RejectNext(2)
	calls := 0
	var retried error
	p := fast
	p.OnRetry = func(_ context.Context, _ int, _ time.Duration, err error) { retried = err }
	err := m.Do(context.Background(), func(ctx context.Context) error {
		calls++
		return insert(ctx, db, tbl, "once")
	}, uow.Retry(p))
	require.NoError(t, err)
	assert.Equal(t, 2, calls)
	var be *uow.BeginError
	require.ErrorAs(t, retried, &be, "the first attempt failed at BEGIN, before any statement")
	assert.Equal(t, 1, count(t, direct, tbl))

	// Without a retry policy the same failure is returned, not hidden.
	proxy.RejectNext(2)
	err = m.Do(context.Background(), func(ctx context.Context) error { return insert(ctx, db, tbl, "twice") })
	require.ErrorAs(t, err, &be)
}

func TestSerializationFailureAtCommitIsRetried(t *testing.T) {
	db := pgtest.Open(t, "uow")
	tbl := newTable(t, db)
	var reasons []error
	p := fast
	p.OnRetry = func(_ context.Context, _ int, _ time.Duration, err error) { reasons = append(reasons, err) }
	m := uow.New(db)

	// Write skew with a transaction the test controls: both read, both
	// write, the other commits first; PostgreSQL then refuses our COMMIT.
	other, err := db.BeginTxx(context.Background(), &sql.TxOptions{Isolation: sql.LevelSerializable})
	require.NoError(t, err)
	defer other.Rollback()
	var n int
	require.NoError(t, other.Get(&n, `SELECT count(*) FROM `+tbl))
	attempts := 0
	err = m.Do(context.Background(), func(ctx context.Context) error {
		attempts++
		q := repo.From(ctx, db)
		if err := q.GetContext(ctx, &n, `SELECT count(*) FROM `+tbl); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO `+tbl+` (v) VALUES ($1)`, fmt.Sprint("mine", attempts)); err != nil {
			return err
		}
		if attempts == 1 {
			_, err := other.Exec(`INSERT INTO ` + tbl + ` (v) VALUES ('theirs')`)
			require.NoError(t, err)
			require.NoError(t, other.Commit())
		}
		return nil
	}, uow.Isolation(sql.LevelSerializable), uow.Retry(p))
	require.NoError(t, err)
	assert.Equal(t, 2, attempts)
	require.Len(t, reasons, 1)
	var ce *uow.CommitError
	require.ErrorAs(t, reasons[0], &ce, "the first attempt failed at COMMIT")
	code, _ := retry.SQLState(reasons[0])
	assert.Equal(t, "40001", code)
	assert.Equal(t, 2, count(t, db, tbl))
}
