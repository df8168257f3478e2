// Package mysqlretry recognises the MySQL and MariaDB errors worth re-running
// a whole transaction for, for use as a [retry.Classifier].
//
// It is a module of its own, github.com/uowkit/uowkit/retry/mysqlretry,
// because it needs the driver's error type: package [retry] links no driver,
// and a program that does not use MySQL should not link this one either.
//
// # Errors
//
// [Retryable] is true for a *mysql.MySQLError from
// [github.com/go-sql-driver/mysql], anywhere in an error's chain, numbered
//
//   - 1213 ER_LOCK_DEADLOCK: InnoDB chose this transaction as a deadlock's
//     victim and rolled it back;
//   - 1205 ER_LOCK_WAIT_TIMEOUT: a lock wait outlasted
//     innodb_lock_wait_timeout.
//
// Like any classifier of a [retry.Policy], it never overrules package
// retry's refusals: it is false for an error whose tree also holds a context
// error, or an error reporting RetryUnsafe() == true (a commit whose outcome
// is unknown). See [retry.Policy.Retryable].
//
// # Use with uow
//
// Add it to the Classifiers of the policy a unit of work retries with:
//
//	err := m.Do(ctx, transfer, uow.Retry(retry.Policy{Classifiers: []retry.Classifier{mysqlretry.Retryable}}))
//
// The policy keeps package retry's own classification too, so one policy
// serves a manager whose sources mix PostgreSQL and MySQL.
//
// # Lock wait timeouts
//
// InnoDB rolls back only the statement that timed out, not the transaction,
// unless the server runs with innodb_rollback_on_timeout. uow re-runs the
// whole unit on a fresh transaction, which is what a retry needs either way;
// code that retries by hand must roll back before re-running.
package mysqlretry
