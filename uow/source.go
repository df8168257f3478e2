package uow

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/jmoiron/sqlx"
)

// This file is the seam between a unit and a kind of database: what the
// scope and commit logic needs from a source (begin with options, commit,
// roll back, run a savepoint statement, tell whether an error leaves the
// transaction unusable), and its database/sql implementation. An adapter for
// another driver (pgx's own pool) implements backend and txConn; nothing
// else in the package changes.

// source is one database of a manager.
type source struct {
	name    string
	index   int
	db      *sqlx.DB // nil for a source that is not database/sql
	backend backend
}

// txOptions are what a BEGIN carries.
type txOptions struct {
	isolation sql.IsolationLevel
	readOnly  bool
}

// backend is what a unit needs from one kind of database.
type backend interface {
	// begin starts a transaction. It waits for a pool connection, and runs
	// BEGIN, no longer than ctx allows. ctx also governs the transaction's
	// life: it is cancelled only to interrupt the transaction (an abort), so
	// the driver may then roll it back on its own.
	begin(ctx context.Context, o txOptions) (txConn, error)
	// beginAttempts bounds the further BEGINs a unit tries, each on
	// another connection, after one failed on a broken connection.
	beginAttempts() int
	// fatal reports whether a failed statement leaves the transaction
	// unable to commit its work (PostgreSQL aborts it on any error).
	fatal(err error) bool
}

// txConn is one source's transaction.
type txConn interface {
	commit() error
	// rollback returns nil when the transaction is already gone: rolled
	// back by the driver, or its connection broken (the server rolls back
	// with the session).
	rollback() error
	// exec runs a control statement: SAVEPOINT, RELEASE, ROLLBACK TO.
	exec(ctx context.Context, stmt string) error
}

// sqlBackend is a database/sql source, through sqlx.
type sqlBackend struct{ db *sqlx.DB }

func (s sqlBackend) begin(ctx context.Context, o txOptions) (txConn, error) {
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{Isolation: o.isolation, ReadOnly: o.readOnly})
	if err != nil {
		return nil, err
	}
	return sqlTx{tx}, nil
}

// beginAttempts allows one more BEGIN per idle connection, each of which may
// have been broken while it sat in the pool (a server restart breaks them
// all), and one on a new connection; at most 64.
func (s sqlBackend) beginAttempts() int { return min(s.db.Stats().Idle+1, 64) }

func (sqlBackend) fatal(err error) bool { return !errors.Is(err, sql.ErrNoRows) }

// sqlTx is a database/sql transaction.
type sqlTx struct{ tx *sqlx.Tx }

func (t sqlTx) commit() error { return t.tx.Commit() }

func (t sqlTx) rollback() error {
	err := t.tx.Rollback()
	if errors.Is(err, sql.ErrTxDone) || errors.Is(err, driver.ErrBadConn) {
		// database/sql already rolled it back, or the connection broke (a
		// cancelled statement makes lib/pq drop it): database/sql closes
		// it, and the server rolls back with the session.
		return nil
	}
	return err
}

func (t sqlTx) exec(ctx context.Context, stmt string) error {
	_, err := t.tx.ExecContext(ctx, stmt)
	return err
}
