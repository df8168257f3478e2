package retry_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/retry"
)

// Two doctors on call each check that another one stays on call, then leave:
// under SERIALIZABLE, PostgreSQL refuses the second with a serialization
// failure, which is worth re-running.
func ExampleRetryable() {
	db := pgtest.ExampleDB("retry")
	defer db.Close()
	db.MustExec(`CREATE TABLE example_oncall (doctor text PRIMARY KEY, on_call bool)`)
	defer db.MustExec(`DROP TABLE example_oncall`)
	db.MustExec(`INSERT INTO example_oncall VALUES ('alice', true), ('bob', true)`)

	serializable := &sql.TxOptions{Isolation: sql.LevelSerializable}
	alice, _ := db.BeginTx(context.Background(), serializable)
	defer alice.Rollback()
	bob, _ := db.BeginTx(context.Background(), serializable)
	defer bob.Rollback()
	var n int
	_ = alice.QueryRow(`SELECT count(*) FROM example_oncall WHERE on_call`).Scan(&n)
	_ = bob.QueryRow(`SELECT count(*) FROM example_oncall WHERE on_call`).Scan(&n)
	_, _ = alice.Exec(`UPDATE example_oncall SET on_call = false WHERE doctor = 'alice'`)
	_, _ = bob.Exec(`UPDATE example_oncall SET on_call = false WHERE doctor = 'bob'`)
	fmt.Println("alice:", alice.Commit())

	err := fmt.Errorf("leave shift: %w", bob.Commit())
	code, _ := retry.SQLState(err)
	fmt.Println("bob:", code, retry.Retryable(err))
	// Output:
	// alice: <nil>
	// bob: 40001 true
}

// A transaction that lost a serialization conflict on its first attempt is
// run again, on a fresh transaction, and succeeds.
func ExamplePolicy_Do() {
	db := pgtest.ExampleDB("retry")
	defer db.Close()
	db.MustExec(`CREATE TABLE example_seats (who text)`)
	defer db.MustExec(`DROP TABLE example_seats`)
	serializable := &sql.TxOptions{Isolation: sql.LevelSerializable}

	// take books a seat if fewer than two are taken; during the first
	// attempt, another booking slips in between its read and its write.
	take := func(ctx context.Context, attempt int) error {
		tx, err := db.BeginTx(ctx, serializable)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var taken int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM example_seats`).Scan(&taken); err != nil {
			return err
		}
		if attempt == 1 {
			other, _ := db.BeginTx(ctx, serializable)
			_ = other.QueryRowContext(ctx, `SELECT count(*) FROM example_seats`).Scan(new(int))
			_, _ = other.ExecContext(ctx, `INSERT INTO example_seats VALUES ('other')`)
			_ = other.Commit()
		}
		if taken >= 2 {
			return errors.New("sold out")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO example_seats VALUES ('me')`); err != nil {
			return fmt.Errorf("take seat: %w", err)
		}
		return tx.Commit()
	}

	p := retry.Policy{
		MaxAttempts: 3,
		OnRetry: func(_ context.Context, attempt int, _ time.Duration, err error) {
			code, _ := retry.SQLState(err)
			fmt.Printf("attempt %d failed with %s, retrying\n", attempt, code)
		},
	}
	err := p.Do(context.Background(), take)
	var seats int
	_ = db.Get(&seats, `SELECT count(*) FROM example_seats`)
	fmt.Println("err:", err, "seats taken:", seats)
	// Output:
	// attempt 1 failed with 40001, retrying
	// err: <nil> seats taken: 2
}

// Backoff ceilings double from BaseDelay up to MaxDelay; each delay is drawn
// uniformly below its ceiling (full jitter), so that conflicting callers
// spread out instead of colliding again.
func ExamplePolicy() {
	p := retry.Policy{
		MaxAttempts: 4,
		BaseDelay:   time.Millisecond,
		MaxDelay:    2 * time.Millisecond,
		OnRetry: func(_ context.Context, attempt int, delay time.Duration, err error) {
			ceiling := min(time.Millisecond<<(attempt-1), 2*time.Millisecond)
			fmt.Printf("attempt %d: %v; backing off at most %v: %t\n", attempt, err, ceiling, delay <= ceiling)
		},
	}
	err := p.Do(context.Background(), func(context.Context, int) error { return errBusy })
	fmt.Println(err)
	// Output:
	// attempt 1: database is locked; backing off at most 1ms: true
	// attempt 2: database is locked; backing off at most 2ms: true
	// attempt 3: database is locked; backing off at most 2ms: true
	// retry: gave up after 4 attempts: database is locked
}

// errBusy is SQLite's SQLITE_BUSY as modernc.org/sqlite reports it: an error
// with a Code() int method.
var errBusy error = sqliteError(5)

type sqliteError int

func (sqliteError) Error() string { return "database is locked" }
func (e sqliteError) Code() int   { return int(e) }

// A foreign key checked only at COMMIT makes the server refuse the COMMIT:
// the outcome is known, nothing was committed.
func ExampleCommitOutcome() {
	db := pgtest.ExampleDB("retry")
	defer db.Close()
	db.MustExec(`CREATE TABLE example_parent (id int PRIMARY KEY)`)
	defer db.MustExec(`DROP TABLE example_parent`)
	db.MustExec(`CREATE TABLE example_child (parent int REFERENCES example_parent DEFERRABLE INITIALLY DEFERRED)`)
	defer db.MustExec(`DROP TABLE example_child`)

	tx, _ := db.Begin()
	_, _ = tx.Exec(`INSERT INTO example_child VALUES (42)`)
	err := tx.Commit()
	fmt.Println(retry.CommitOutcome(err))
	fmt.Println(retry.CommitOutcome(tx.Commit())) // sql.ErrTxDone
	// Output:
	// failed
	// rolled back
}
