package retry_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/faultproxy"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/retry"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var seq atomic.Int64

// openPG opens the package's test database with the given driver ("postgres"
// for lib/pq, "pgx" for pgx's database/sql driver).
func openPG(t *testing.T, driver string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, pgtest.URL(t, "retry"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func newTable(t *testing.T, db *sql.DB, def string) string {
	t.Helper()
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), seq.Add(1))
	_, err := db.Exec(`CREATE TABLE ` + name + ` ` + def)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Exec(`DROP TABLE IF EXISTS ` + name) })
	return name
}

// serializationFailure produces a real 40001: two serializable transactions
// each read what the other writes (write skew); the second to commit fails.
func serializationFailure(t *testing.T, db *sql.DB) error {
	t.Helper()
	tbl := newTable(t, db, `(v int)`)
	ctx := context.Background()
	opts := &sql.TxOptions{Isolation: sql.LevelSerializable}
	tx1, err := db.BeginTx(ctx, opts)
	require.NoError(t, err)
	defer tx1.Rollback()
	tx2, err := db.BeginTx(ctx, opts)
	require.NoError(t, err)
	defer tx2.Rollback()
	var n int
	require.NoError(t, tx1.QueryRow(`SELECT count(*) FROM `+tbl).Scan(&n))
	require.NoError(t, tx2.QueryRow(`SELECT count(*) FROM `+tbl).Scan(&n))
	_, err = tx1.Exec(`INSERT INTO ` + tbl + ` VALUES (1)`)
	require.NoError(t, err)
	_, err = tx2.Exec(`INSERT INTO ` + tbl + ` VALUES (2)`)
	require.NoError(t, err)
	require.NoError(t, tx1.Commit())
	err = tx2.Commit()
	require.Error(t, err)
	return err
}

// deadlock produces a real deadlock: two transactions lock two rows in
// opposite orders. lockA and lockB lock row A and row B. Exactly one of the
// transactions is chosen as the victim; its error is returned.
func deadlock(t *testing.T, db *sql.DB, lockA, lockB string, setup ...string) error {
	t.Helper()
	ctx := context.Background()
	begin := func() *sql.Tx {
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		for _, s := range setup {
			_, err = tx.Exec(s)
			require.NoError(t, err)
		}
		return tx
	}
	tx1, tx2 := begin(), begin()
	defer tx1.Rollback()
	defer tx2.Rollback()
	_, err := tx1.Exec(lockA)
	require.NoError(t, err)
	_, err = tx2.Exec(lockB)
	require.NoError(t, err)
	// Each now waits for the other: whichever order the two statements reach
	// the server in, the deadlock detector picks one victim and the other
	// statement then proceeds.
	errs := make(chan error, 2)
	go func() { _, err := tx1.Exec(lockB); errs <- err }()
	go func() { _, err := tx2.Exec(lockA); errs <- err }()
	e1, e2 := <-errs, <-errs
	require.True(t, (e1 == nil) != (e2 == nil), "exactly one victim: %v / %v", e1, e2)
	return errors.Join(e1, e2)
}

func TestRealPostgresConflictsAreRetryable(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"postgres", "pgx"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			db := openPG(t, driver)

			err := serializationFailure(t, db)
			code, ok := retry.SQLState(err)
			require.True(t, ok, "%T %v", err, err)
			assert.Equal(t, "40001", code)
			assert.True(t, retry.Retryable(err))
			assert.True(t, retry.Retryable(fmt.Errorf("service: %w", fmt.Errorf("repo: %w", err))), "matched through wrapping")
			assert.Equal(t, retry.OutcomeFailed, retry.CommitOutcome(err))

			tbl := newTable(t, db, `(id int PRIMARY KEY, v int)`)
			_, err = db.Exec(`INSERT INTO ` + tbl + ` VALUES (1, 0), (2, 0)`)
			require.NoError(t, err)
			err = deadlock(t, db,
				`UPDATE `+tbl+` SET v = v + 1 WHERE id = 1`,
				`UPDATE `+tbl+` SET v = v + 1 WHERE id = 2`,
				`SET LOCAL deadlock_timeout = '20ms'`)
			code, _ = retry.SQLState(err)
			assert.Equal(t, "40P01", code)
			assert.True(t, retry.Retryable(err))
		})
	}
}

func TestNonTransientErrorsAreNotRetryable(t *testing.T) {
	t.Parallel()
	db := openPG(t, "postgres")
	tbl := newTable(t, db, `(id int PRIMARY KEY)`)
	_, err := db.Exec(`INSERT INTO ` + tbl + ` VALUES (1)`)
	require.NoError(t, err)
	_, dup := db.Exec(`INSERT INTO ` + tbl + ` VALUES (1)`)
	_, syntax := db.Exec(`SELEC 1`)
	var none int
	noRows := db.QueryRow(`SELECT 1 WHERE false`).Scan(&none)
	for name, err := range map[string]error{
		"unique violation": dup, "syntax": syntax, "no rows": noRows,
		"canceled": context.Canceled, "deadline": fmt.Errorf("x: %w", context.DeadlineExceeded), "nil": nil,
	} {
		assert.False(t, retry.Retryable(err), name)
		assert.False(t, retry.Policy{}.Retryable(err), name)
	}
	code, _ := retry.SQLState(dup)
	assert.Equal(t, "23505", code)
}

type unsafeErr struct{ error }

func (unsafeErr) RetryUnsafe() bool { return true }
func (e unsafeErr) Unwrap() error   { return e.error }

// safeErr says nothing about safety: RetryUnsafe() == false.
type safeErr struct{ error }

func (safeErr) RetryUnsafe() bool { return false }
func (e safeErr) Unwrap() error   { return e.error }

func TestPolicyDo(t *testing.T) {
	t.Parallel()
	conflict := &pq.Error{Code: "40001"}
	fast := retry.Policy{BaseDelay: time.Microsecond, MaxDelay: time.Microsecond}

	t.Run("succeeds after retryable failures", func(t *testing.T) {
		var retries []int
		p := fast
		p.OnRetry = func(_ context.Context, attempt int, _ time.Duration, err error) {
			retries = append(retries, attempt)
			assert.ErrorIs(t, err, conflict)
		}
		calls := 0
		err := p.Do(context.Background(), func(_ context.Context, attempt int) error {
			calls++
			assert.Equal(t, calls, attempt)
			if attempt < 3 {
				return conflict
			}
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, []int{1, 2}, retries)
	})
	t.Run("stops on a non-retryable error", func(t *testing.T) {
		boom := errors.New("boom")
		calls := 0
		err := fast.Do(context.Background(), func(context.Context, int) error { calls++; return boom })
		require.Same(t, boom, err)
		assert.Equal(t, 1, calls)
	})
	t.Run("exhausted", func(t *testing.T) {
		p := fast
		p.MaxAttempts = 3
		calls := 0
		err := p.Do(context.Background(), func(context.Context, int) error { calls++; return fmt.Errorf("wrapped: %w", conflict) })
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, 3, ex.Attempts)
		assert.Equal(t, 3, calls)
		assert.ErrorIs(t, err, conflict, "the cause is still found")
	})
	t.Run("cancelled before backoff returns at once", func(t *testing.T) {
		// A backoff of up to a century: only the cancellation can end it.
		ctx, cancel := context.WithCancel(context.Background())
		p := retry.Policy{BaseDelay: 100 * 365 * 24 * time.Hour}
		p.OnRetry = func(context.Context, int, time.Duration, error) { cancel() }
		calls := 0
		err := p.Do(ctx, func(context.Context, int) error { calls++; return conflict })
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, conflict)
		assert.Equal(t, 1, calls)
	})
	t.Run("max elapsed stops retrying", func(t *testing.T) {
		// The attempt itself outlasts MaxElapsed (it spins until the
		// monotonic clock has moved past it; nothing waits on a timer), so
		// elapsed time plus any delay exceeds it: no second attempt, and
		// OnRetry is not called for a retry that will not happen.
		p := retry.Policy{MaxElapsed: time.Microsecond, OnRetry: func(context.Context, int, time.Duration, error) {
			t.Error("OnRetry called although MaxElapsed has passed")
		}}
		calls := 0
		err := p.Do(context.Background(), func(context.Context, int) error {
			calls++
			for t0 := time.Now(); time.Since(t0) <= p.MaxElapsed; {
			}
			return conflict
		})
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, 1, ex.Attempts)
		assert.Equal(t, 1, calls)
		assert.ErrorIs(t, err, conflict)
	})
	t.Run("max elapsed not reached", func(t *testing.T) {
		p := fast
		p.MaxElapsed = time.Hour
		calls := 0
		err := p.Do(context.Background(), func(context.Context, int) error { calls++; return conflict })
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, retry.DefaultMaxAttempts, calls)
	})
	t.Run("one attempt means no retry", func(t *testing.T) {
		p := fast
		p.MaxAttempts = 1
		calls := 0
		err := p.Do(context.Background(), func(context.Context, int) error { calls++; return conflict })
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, 1, calls)
	})
	t.Run("done context: no attempt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := fast.Do(ctx, func(context.Context, int) error { t.Error("called"); return nil })
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("context error from fn is not retried", func(t *testing.T) {
		calls := 0
		err := fast.Do(context.Background(), func(context.Context, int) error {
			calls++
			return fmt.Errorf("query: %w", context.DeadlineExceeded)
		})
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 1, calls)
	})
	t.Run("retry-unsafe errors are never retried", func(t *testing.T) {
		calls := 0
		err := fast.Do(context.Background(), func(context.Context, int) error {
			calls++
			return fmt.Errorf("uow: %w", unsafeErr{conflict})
		})
		require.ErrorIs(t, err, conflict, "returned as is")
		assert.Equal(t, 1, calls)
		assert.True(t, retry.Retryable(conflict), "the cause alone would be retried")
		assert.False(t, retry.Retryable(err))
		assert.False(t, retry.Policy{}.Retryable(err))
		assert.True(t, retry.Policy{}.Retryable(safeErr{conflict}), "RetryUnsafe() == false changes nothing")
	})
	t.Run("custom classifier", func(t *testing.T) {
		mine := errors.New("mine")
		p := fast
		p.Classifiers = []retry.Classifier{func(err error) bool { return errors.Is(err, mine) }}
		calls := 0
		require.NoError(t, p.Do(context.Background(), func(context.Context, int) error {
			calls++
			if calls == 1 {
				return mine
			}
			return nil
		}))
		assert.Equal(t, 2, calls)
	})
}

func TestRetryableByCode(t *testing.T) {
	t.Parallel()
	// Codes a server cannot be made to produce on demand, and the matching
	// rules themselves; the real errors are in the tests above.
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"pq 40001", &pq.Error{Code: "40001"}, true},
		{"pq 40P01", &pq.Error{Code: "40P01"}, true},
		{"pgconn 40001", &pgconn.PgError{Code: "40001"}, true},
		{"pgconn 40003 statement completion unknown", &pgconn.PgError{Code: "40003"}, false},
		{"pq 23505", &pq.Error{Code: "23505"}, false},
		{"sqlite BUSY", codeErr(5), true},
		{"sqlite LOCKED", codeErr(6), true},
		{"sqlite BUSY_SNAPSHOT (extended)", codeErr(5 | 2<<8), true},
		{"sqlite LOCKED_SHAREDCACHE (extended)", codeErr(6 | 1<<8), true},
		{"sqlite CONSTRAINT", codeErr(19), false},
		{"sqlite CONSTRAINT_UNIQUE (extended, low byte 19)", codeErr(19 | 8<<8), false},
		{"message text is never enough", errors.New("deadlock detected (SQLSTATE 40P01)"), false},
		{"MySQL numbers are mysqlretry's", errors.New("Error 1213 (40001): Deadlock found when trying to get lock"), false},
		{"conflict joined with cancellation", errors.Join(&pq.Error{Code: "40001"}, context.Canceled), false},
		{"driver.ErrBadConn", driver.ErrBadConn, false},
	} {
		assert.Equal(t, tc.want, retry.Retryable(tc.err), tc.name)
		assert.Equal(t, tc.want, retry.Policy{}.Retryable(tc.err), tc.name)
	}
	code, ok := retry.SQLState(fmt.Errorf("x: %w", &pgconn.PgError{Code: "23505"}))
	assert.True(t, ok)
	assert.Equal(t, "23505", code)
	_, ok = retry.SQLState(errors.New("plain"))
	assert.False(t, ok)
	_, ok = retry.SQLState(nil)
	assert.False(t, ok)
}

// lookalike is an error of its own type whose text may equal a driver's
// sentinel.
type lookalike string

func (e lookalike) Error() string { return string(e) }

type codeErr int

func (e codeErr) Error() string { return fmt.Sprintf("sqlite code %d", int(e)) }
func (e codeErr) Code() int     { return int(e) }

func TestCommitOutcomeByError(t *testing.T) {
	t.Parallel()
	// The real failures are in the tests below; these are the rules, for
	// errors a test cannot produce on demand.
	for _, tc := range []struct {
		name string
		err  error
		want retry.Outcome
	}{
		{"server error", &pq.Error{Code: "23503"}, retry.OutcomeFailed},
		{"serialization failure at commit", &pgconn.PgError{Code: "40001"}, retry.OutcomeFailed},
		{"cancelled by the server", &pgconn.PgError{Code: "57014"}, retry.OutcomeFailed},
		{"connection failure", &pgconn.PgError{Code: "08006"}, retry.OutcomeUnknown},
		{"admin shutdown", &pq.Error{Code: "57P01"}, retry.OutcomeUnknown},
		{"crash shutdown", &pq.Error{Code: "57P02"}, retry.OutcomeUnknown},
		{"statement completion unknown", &pgconn.PgError{Code: "40003"}, retry.OutcomeUnknown},
		// The drivers' real sentinels, which the package recognises by their
		// text: an upgrade that rewords one fails here.
		{"pq.ErrInFailedTransaction", pq.ErrInFailedTransaction, retry.OutcomeRolledBack},
		{"pgx.ErrTxCommitRollback", pgx.ErrTxCommitRollback, retry.OutcomeRolledBack},
		{"pq.ErrInFailedTransaction wrapped", fmt.Errorf("b: %w", fmt.Errorf("a: %w", pq.ErrInFailedTransaction)), retry.OutcomeRolledBack},
		{"pgx.ErrTxCommitRollback wrapped", fmt.Errorf("commit: %w", pgx.ErrTxCommitRollback), retry.OutcomeRolledBack},
		{"pgx.ErrTxCommitRollback joined", errors.Join(errors.New("x"), fmt.Errorf("y: %w", pgx.ErrTxCommitRollback)), retry.OutcomeRolledBack},
		{"the sentinel's text in a longer message", errors.New("x: " + pgx.ErrTxCommitRollback.Error()), retry.OutcomeUnknown},
		{"the sentinel's text from another type", lookalike(pgx.ErrTxCommitRollback.Error()), retry.OutcomeUnknown},
		{"sql.ErrTxDone", fmt.Errorf("x: %w", sql.ErrTxDone), retry.OutcomeRolledBack},
		{"context.Canceled", context.Canceled, retry.OutcomeUnknown},
		{"context.DeadlineExceeded", context.DeadlineExceeded, retry.OutcomeUnknown},
		{"driver.ErrBadConn", driver.ErrBadConn, retry.OutcomeUnknown},
		{"io.EOF", io.EOF, retry.OutcomeUnknown},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF, retry.OutcomeUnknown},
		{"net error", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, retry.OutcomeUnknown},
	} {
		assert.Equal(t, tc.want, retry.CommitOutcome(tc.err), tc.name)
	}
	for o, s := range map[retry.Outcome]string{
		retry.OutcomeFailed: "failed", retry.OutcomeRolledBack: "rolled back", retry.OutcomeUnknown: "unknown", 0: "invalid",
	} {
		assert.Equal(t, s, o.String())
	}
}

// viaProxy returns the test database's URL rewritten to go through p.
func viaProxy(t *testing.T, p *faultproxy.Proxy) string {
	u, err := url.Parse(pgtest.URL(t, "retry"))
	require.NoError(t, err)
	u.Host = p.Addr()
	return u.String()
}

func TestCommitOutcomeUnknownWhenTheAnswerIsLost(t *testing.T) {
	t.Parallel()
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			direct := openPG(t, "postgres")
			tbl := newTable(t, direct, `(v text)`)
			proxy := faultproxy.Start(t, "127.0.0.1:5432")
			db, err := sql.Open(drv, viaProxy(t, proxy))
			require.NoError(t, err)
			defer db.Close()

			tx, err := db.Begin()
			require.NoError(t, err)
			_, err = tx.Exec(`INSERT INTO ` + tbl + ` VALUES ('committed?')`)
			require.NoError(t, err)
			proxy.DropCommitReply(true)
			err = tx.Commit()
			require.Error(t, err, "the client never heard the answer")
			assert.Equal(t, int64(1), proxy.DroppedCommits())
			assert.Equal(t, retry.OutcomeUnknown, retry.CommitOutcome(err), "%T %v", err, err)
			if drv == "postgres" {
				assert.ErrorIs(t, err, driver.ErrBadConn, "what lib/pq also says when nothing committed")
			}

			var n int
			require.NoError(t, direct.QueryRow(`SELECT count(*) FROM `+tbl).Scan(&n))
			assert.Equal(t, 1, n, "yet the row IS committed")
		})
	}
}

func TestCommitOutcomeWhenTheBackendDiesFirst(t *testing.T) {
	t.Parallel()
	// Here nothing was committed, but the client cannot tell this from the
	// lost answer above: lib/pq only sees a broken connection, exactly as
	// there; pgx reads the server's parting FATAL 57P01, which the server
	// also sends when it is terminated after writing a commit record but
	// before answering. Hence "unknown" for both.
	for drv, same := range map[string]func(t *testing.T, err error){
		// Exactly the error of a lost COMMIT answer.
		"postgres": func(t *testing.T, err error) { assert.ErrorIs(t, err, driver.ErrBadConn) },
		// The server's goodbye, also sent after a commit record was written.
		"pgx": func(t *testing.T, err error) {
			code, _ := retry.SQLState(err)
			assert.Equal(t, "57P01", code)
		},
	} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			direct := openPG(t, "postgres")
			tbl := newTable(t, direct, `(v text)`)
			db := openPG(t, drv)
			tx, err := db.Begin()
			require.NoError(t, err)
			var pid int
			require.NoError(t, tx.QueryRow(`SELECT pg_backend_pid()`).Scan(&pid))
			_, err = tx.Exec(`INSERT INTO ` + tbl + ` VALUES ('lost')`)
			require.NoError(t, err)
			var ok bool
			require.NoError(t, direct.QueryRow(`SELECT pg_terminate_backend($1, 5000)`, pid).Scan(&ok))
			require.True(t, ok)
			err = tx.Commit()
			require.Error(t, err)
			same(t, err)
			assert.Equal(t, retry.OutcomeUnknown, retry.CommitOutcome(err), "%T %v", err, err)
			var n int
			require.NoError(t, direct.QueryRow(`SELECT count(*) FROM `+tbl).Scan(&n))
			assert.Zero(t, n)
		})
	}
}

func TestCommitOutcomeUnknownWhenTheContextEndsDuringCommit(t *testing.T) {
	t.Parallel()
	// pgx's database/sql driver commits with the transaction's context: if
	// it ends while COMMIT is in flight, Commit returns the bare
	// context.Canceled, the same error database/sql returns when the context
	// ended before COMMIT was sent. The COMMIT may well be applied.
	direct := openPG(t, "postgres")
	tbl := newTable(t, direct, `(v text)`)
	proxy := faultproxy.Start(t, "127.0.0.1:5432")
	db, err := sql.Open("pgx", viaProxy(t, proxy))
	require.NoError(t, err)
	defer db.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.Exec(`INSERT INTO ` + tbl + ` VALUES ('committed?')`)
	require.NoError(t, err)
	proxy.StallCommitReply(true)
	done := make(chan error, 1)
	go func() { done <- tx.Commit() }()
	<-proxy.Applied() // the server has committed; the answer is held back
	cancel()
	err = <-done
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, retry.OutcomeUnknown, retry.CommitOutcome(err), "%T %v", err, err)

	var n int
	require.NoError(t, direct.QueryRow(`SELECT count(*) FROM `+tbl).Scan(&n))
	assert.Equal(t, 1, n, "the row IS committed")
}

func TestCommitOutcomeFailedAndRolledBack(t *testing.T) {
	t.Parallel()
	for driver, rolledBack := range map[string]error{"postgres": pq.ErrInFailedTransaction, "pgx": pgx.ErrTxCommitRollback} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			db := openPG(t, driver)
			parent := newTable(t, db, `(id int PRIMARY KEY)`)
			child := newTable(t, db, `(parent int REFERENCES `+parent+` DEFERRABLE INITIALLY DEFERRED)`)
			tx, err := db.Begin()
			require.NoError(t, err)
			_, err = tx.Exec(`INSERT INTO ` + child + ` VALUES (7)`)
			require.NoError(t, err, "the orphan is accepted until COMMIT")
			err = tx.Commit()
			code, _ := retry.SQLState(err)
			assert.Equal(t, "23503", code, "a deferred foreign key fails at COMMIT")
			assert.Equal(t, retry.OutcomeFailed, retry.CommitOutcome(err))

			// COMMIT of a transaction aborted by an earlier error: the
			// server answers ROLLBACK, not an error.
			tx, err = db.Begin()
			require.NoError(t, err)
			_, err = tx.Exec(`SELEC 1`)
			require.Error(t, err)
			err = tx.Commit()
			require.ErrorIs(t, err, rolledBack)
			assert.Equal(t, retry.OutcomeRolledBack, retry.CommitOutcome(err))

			err = tx.Commit()
			require.ErrorIs(t, err, sql.ErrTxDone)
			assert.Equal(t, retry.OutcomeRolledBack, retry.CommitOutcome(err))
		})
	}
}

// TestUnsafeAnywhereInTheTreeIsNeverRetried: the guard against re-running a
// commit that may have applied must see an unsafe error however it is
// wrapped, also when joined after a safe one (errors.As stops at the
// first), and no classifier can override it.
func TestUnsafeAnywhereInTheTreeIsNeverRetried(t *testing.T) {
	t.Parallel()
	conflict := &pq.Error{Code: "40001"}
	unsafe := unsafeErr{conflict}
	safe := safeErr{conflict}
	everything := retry.Policy{Classifiers: []retry.Classifier{func(error) bool { return true }}}
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"conflict":                    {conflict, true},
		"safe":                        {safe, true},
		"unsafe":                      {unsafe, false},
		"wrapped unsafe":              {fmt.Errorf("a: %w", fmt.Errorf("b: %w", unsafe)), false},
		"joined safe then unsafe":     {errors.Join(safe, unsafe), false},
		"joined conflict then unsafe": {errors.Join(conflict, unsafe), false},
		"multi %w safe then unsafe":   {fmt.Errorf("%w; %w", safe, unsafe), false},
		"nested join":                 {fmt.Errorf("x: %w", errors.Join(conflict, fmt.Errorf("y: %w", errors.Join(safe, unsafe)))), false},
		"joined safe and conflict":    {errors.Join(safe, conflict), true},
	} {
		assert.Equal(t, tc.want, retry.Retryable(tc.err), "Retryable: %s", name)
		assert.Equal(t, tc.want, retry.Policy{}.Retryable(tc.err), "Policy.Retryable: %s", name)
		assert.Equal(t, tc.want, everything.Retryable(tc.err), "a classifier cannot override: %s", name)
	}
}

// beginFailure is shaped like uow's *BeginError: it vouches, or not, that
// nothing ran before it failed.
type beginFailure struct {
	error
	safe bool
}

func (e beginFailure) RetrySafe() bool { return e.safe }
func (e beginFailure) Unwrap() error   { return e.error }

// TestRetrySafeErrorsAreRetryable: an error that vouches for a safe re-run
// is retried however it is wrapped or joined, unless the tree also says the
// re-run is unsafe or holds a context error.
func TestRetrySafeErrorsAreRetryable(t *testing.T) {
	t.Parallel()
	reset := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	safe := beginFailure{reset, true}
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"connection failure at BEGIN":       {safe, true},
		"wrapped":                           {fmt.Errorf("a: %w", fmt.Errorf("b: %w", safe)), true},
		"joined after a plain error":        {errors.Join(errors.New("x"), safe), true},
		"RetryUnsafe() false around it":     {safeErr{safe}, true},
		"the cause alone":                   {reset, false},
		"RetrySafe() false":                 {beginFailure{reset, false}, false},
		"RetrySafe() false changes nothing": {beginFailure{&pq.Error{Code: "40001"}, false}, true},
		"joined with an unsafe error":       {errors.Join(safe, unsafeErr{errors.New("commit lost")}), false},
		"unsafe joined first":               {errors.Join(unsafeErr{errors.New("commit lost")}, safe), false},
		"inside an unsafe error":            {unsafeErr{safe}, false},
		"caused by a deadline":              {beginFailure{fmt.Errorf("begin: %w", context.DeadlineExceeded), true}, false},
		"joined with a cancellation":        {errors.Join(safe, context.Canceled), false},
	} {
		assert.Equal(t, tc.want, retry.Retryable(tc.err), "Retryable: %s", name)
		assert.Equal(t, tc.want, retry.Policy{}.Retryable(tc.err), "Policy.Retryable: %s", name)
	}

	calls := 0
	err := retry.Policy{BaseDelay: time.Microsecond}.Do(context.Background(), func(context.Context, int) error {
		if calls++; calls == 1 {
			return fmt.Errorf("uow: %w", safe)
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, calls, "Do re-ran the attempt")
}
