package mysqlretry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/retry/mysqlretry"
	"github.com/uowkit/uowkit/uow"
)

// Two transfers lock the same two accounts in opposite orders: InnoDB breaks
// the deadlock by rolling one of them back with error 1213, and Do, told by
// the classifier that the error is worth it, re-runs that one on a fresh
// transaction. Both transfers are applied, each exactly once.
func Example() {
	db := sqlx.MustOpen("mysql", dsn())
	defer db.Close()
	db.MustExec(`CREATE TABLE example_accounts (id int PRIMARY KEY, balance int) ENGINE=InnoDB`)
	defer db.MustExec(`DROP TABLE example_accounts`)
	db.MustExec(`INSERT INTO example_accounts VALUES (1, 100), (2, 100)`)

	m := uow.New(db)
	policy := retry.Policy{
		Classifiers: []retry.Classifier{mysqlretry.Retryable},
		OnRetry: func(_ context.Context, attempt int, _ time.Duration, err error) {
			var me *mysql.MySQLError
			if errors.As(err, &me) {
				fmt.Printf("attempt %d: error %d, retrying\n", attempt, me.Number)
			}
		},
	}

	// Both transfers hold their first row before either asks for its
	// second, so that they deadlock on their first attempt.
	var holding sync.WaitGroup
	holding.Add(2)
	transfer := func(from, to, amount int) error {
		first := true
		return m.Do(context.Background(), func(ctx context.Context) error {
			q := repo.From(ctx, db)
			if _, err := q.ExecContext(ctx, `UPDATE example_accounts SET balance = balance - ? WHERE id = ?`, amount, from); err != nil {
				return err
			}
			if first {
				first = false
				holding.Done()
				holding.Wait()
			}
			_, err := q.ExecContext(ctx, `UPDATE example_accounts SET balance = balance + ? WHERE id = ?`, amount, to)
			return err
		}, uow.Retry(policy))
	}
	errs := make(chan error, 2)
	go func() { errs <- transfer(1, 2, 30) }()
	go func() { errs <- transfer(2, 1, 10) }()
	fmt.Println(<-errs, <-errs)

	var balances []int
	_ = db.Select(&balances, `SELECT balance FROM example_accounts ORDER BY id`)
	fmt.Println(balances)
	// Output:
	// attempt 1: error 1213, retrying
	// <nil> <nil>
	// [80 120]
}
