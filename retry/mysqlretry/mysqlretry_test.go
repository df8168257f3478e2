package mysqlretry_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/retry/mysqlretry"
)

// envDSN names the environment variable that points the tests at a MySQL or
// MariaDB server, as a go-sql-driver/mysql DSN.
const envDSN = "UOWKIT_MYSQL_DSN"

// skipWhy says why the tests that need a server cannot run; empty when one
// is reachable.
var skipWhy string

func TestMain(m *testing.M) {
	flag.Parse()
	if err := ping(dsn()); err != nil {
		skipWhy = fmt.Sprintf("no MariaDB/MySQL reachable at %s (%v); start one or set %s", redact(dsn()), err, envDSN)
		// The examples talk to the server and cannot skip themselves:
		// without one, run only the tests, whose server-bound ones skip
		// (or fail, under CI) with this message.
		if run := flag.Lookup("test.run"); run.Value.String() == "" {
			_ = run.Value.Set("^Test")
		}
		fmt.Fprintln(os.Stderr, "mysqlretry: skipping the examples: "+skipWhy)
	}
	goleak.VerifyTestMain(m)
}

// dsn returns the DSN of the test server: UOWKIT_MYSQL_DSN, or MariaDB's
// root without a password on 127.0.0.1:3306, database test.
func dsn() string {
	if d := os.Getenv(envDSN); d != "" {
		return d
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// redact hides the password of dsn, for messages.
func redact(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "xxx"
	}
	return cfg.FormatDSN()
}

func ping(dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// openMariaDB returns a pool on the test server, closed at the end of the
// test. It skips the test when no server is reachable, and fails it instead
// when the CI environment variable is set, so that CI never passes without
// a real server.
func openMariaDB(tb testing.TB) *sqlx.DB {
	tb.Helper()
	if skipWhy != "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("mysqlretry: CI is set, so a missing server is a failure: " + skipWhy)
		}
		tb.Skip("mysqlretry: " + skipWhy)
	}
	db, err := sqlx.Open("mysql", dsn())
	require.NoError(tb, err)
	tb.Cleanup(func() { db.Close() })
	return db
}

var tableSeq atomic.Int64

// table creates a table with the given columns under a name of its own,
// dropped at the end of the test.
func table(tb testing.TB, db *sqlx.DB, columns string) string {
	tb.Helper()
	name := fmt.Sprintf("mysqlretry_%d_%d", os.Getpid(), tableSeq.Add(1))
	db.MustExec(`CREATE TABLE ` + name + ` (` + columns + `) ENGINE=InnoDB`)
	tb.Cleanup(func() { _, _ = db.Exec(`DROP TABLE IF EXISTS ` + name) })
	return name
}

// unsafeErr says re-running is unsafe, as uow's *CommitError does for an
// unknown commit.
type unsafeErr struct{ error }

func (unsafeErr) RetryUnsafe() bool { return true }
func (e unsafeErr) Unwrap() error   { return e.error }

// sqlStateErr is a PostgreSQL-style error: package retry's business.
type sqlStateErr string

func (e sqlStateErr) Error() string    { return "SQLSTATE " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }

func TestRetryable(t *testing.T) {
	t.Parallel()
	deadlock := &mysql.MySQLError{Number: 1213, SQLState: [5]byte{'4', '0', '0', '0', '1'}, Message: "Deadlock found when trying to get lock; try restarting transaction"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"deadlock", deadlock, true},
		{"lock wait timeout", &mysql.MySQLError{Number: 1205}, true},
		{"wrapped", fmt.Errorf("transfer: %w", fmt.Errorf("repo: %w", deadlock)), true},
		{"joined", errors.Join(errors.New("x"), deadlock), true},
		{"duplicate key", &mysql.MySQLError{Number: 1062}, false},
		{"a MySQL deadlock's SQLSTATE 40001 is not looked at", &mysql.MySQLError{Number: 1062, SQLState: [5]byte{'4', '0', '0', '0', '1'}}, false},
		{"message text is never enough", errors.New(deadlock.Error()), false},
		{"nil", nil, false},
		{"PostgreSQL's conflicts are package retry's", sqlStateErr("40001"), false},
		{"joined with a cancellation", errors.Join(deadlock, context.Canceled), false},
		{"wrapping a deadline", fmt.Errorf("%w: %w", deadlock, context.DeadlineExceeded), false},
		{"inside an unsafe error", unsafeErr{deadlock}, false},
		{"joined with an unsafe error", errors.Join(deadlock, unsafeErr{errors.New("commit lost")}), false},
	} {
		assert.Equal(t, tc.want, mysqlretry.Retryable(tc.err), tc.name)
	}
}

func TestPolicyWithTheClassifier(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Classifiers: []retry.Classifier{mysqlretry.Retryable}}
	deadlock := &mysql.MySQLError{Number: 1213}
	assert.False(t, retry.Retryable(deadlock), "the core knows no MySQL number")
	assert.True(t, p.Retryable(deadlock))
	assert.True(t, p.Retryable(sqlStateErr("40P01")), "the policy keeps the core's classification")
	assert.False(t, p.Retryable(unsafeErr{deadlock}))

	calls := 0
	p.BaseDelay = time.Microsecond
	err := p.Do(context.Background(), func(context.Context, int) error {
		if calls++; calls < 3 {
			return fmt.Errorf("transfer: %w", deadlock)
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 3, calls)
}

// TestRealDeadlockIsRetryable produces a real InnoDB deadlock: two
// transactions lock two rows in opposite orders, and the server rolls one
// back with 1213.
func TestRealDeadlockIsRetryable(t *testing.T) {
	t.Parallel()
	db := openMariaDB(t)
	tbl := table(t, db, `id int PRIMARY KEY, v int`)
	db.MustExec(`INSERT INTO ` + tbl + ` VALUES (1, 0), (2, 0)`)
	lock := func(tx *sql.Tx, id int) error {
		_, err := tx.Exec(`UPDATE `+tbl+` SET v = v + 1 WHERE id = ?`, id)
		return err
	}
	tx1, err := db.Begin()
	require.NoError(t, err)
	defer tx1.Rollback()
	tx2, err := db.Begin()
	require.NoError(t, err)
	defer tx2.Rollback()
	require.NoError(t, lock(tx1, 1))
	require.NoError(t, lock(tx2, 2))
	// Each now waits for the other: whichever order the two statements
	// reach the server in, the deadlock detector picks one victim and the
	// other statement then proceeds.
	errs := make(chan error, 2)
	go func() { errs <- lock(tx1, 2) }()
	go func() { errs <- lock(tx2, 1) }()
	e1, e2 := <-errs, <-errs
	require.True(t, (e1 == nil) != (e2 == nil), "exactly one victim: %v / %v", e1, e2)
	err = fmt.Errorf("transfer: %w", errors.Join(e1, e2))

	var me *mysql.MySQLError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, uint16(1213), me.Number, "%v", err)
	assert.True(t, mysqlretry.Retryable(err))
	assert.False(t, retry.Retryable(err), "only with the classifier")
	assert.True(t, retry.Policy{Classifiers: []retry.Classifier{mysqlretry.Retryable}}.Retryable(err))
}
