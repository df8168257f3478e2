package repo

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/errrow"
	"github.com/uowkit/uowkit/uow"
)

// Querier is what a repository method needs to run statements. *sqlx.DB,
// *sqlx.Tx and a unit's *uow.Handle all satisfy it, so one method works in and
// out of a unit of work. It is sqlx's ExtContext plus the usual helpers; sqlx
// functions taking an ExtContext (sqlx.NamedQueryContext, sqlx.In with
// Rebind) accept it too. With QueryRowContext and PrepareContext it is also
// the DBTX interface that sqlc generates for database/sql: pass
// repo.From(ctx, db) to sqlc's New.
type Querier interface {
	sqlx.ExtContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
	NamedExecContext(ctx context.Context, query string, arg any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// Tx is a Querier that is certainly inside a unit of work. Only a unit's
// handle satisfies it (a *sqlx.DB does not compile where a Tx is expected), so
// a repository method that needs several statements to be atomic says so in
// its signature. Unit gives access to hooks (AfterCommit) and SetRollbackOnly.
type Tx interface {
	Querier
	Unit() *uow.Unit
}

var (
	_ Querier = (*sqlx.DB)(nil)
	_ Querier = (*sqlx.Tx)(nil)
	_ Tx      = (*uow.Handle)(nil)
)

// From returns the querier a repository should use on db: the active unit's
// transaction on db when ctx carries a unit (begun on first use), otherwise
// db itself, in autocommit mode. Inside a unit, db must be one of the
// manager's databases (uow.New, uow.WithSource): the statements on any other
// fail with uow.ErrUnknownSource rather than run outside the unit.
//
// A finished unit in ctx is still found: its statements fail with
// uow.ErrDone rather than silently running outside a transaction.
//
// A nil db is a wiring mistake found at request time, so it does not panic:
// every statement on the returned Querier fails with an error matching
// uow.ErrUnknownSource, and nothing is sent anywhere.
func From(ctx context.Context, db *sqlx.DB) Querier {
	if u := uow.FromContext(ctx); u != nil {
		return u.On(db) // fails the same way for a nil db
	}
	if db == nil {
		return invalid{errNilDB}
	}
	return db
}

var errNilDB = fmt.Errorf("repo: %w: nil database", uow.ErrUnknownSource)

// TxFrom returns the active unit's transaction on db, or uow.ErrNoUnit when
// ctx carries no unit: for repository methods that must not run in
// autocommit mode.
//
// A nil db returns an error matching uow.ErrUnknownSource.
func TxFrom(ctx context.Context, db *sqlx.DB) (Tx, error) {
	if db == nil {
		return nil, errNilDB
	}
	u := uow.FromContext(ctx)
	if u == nil {
		return nil, uow.ErrNoUnit
	}
	return u.On(db), nil
}

// invalid is the Querier of a nil database outside a unit: every statement
// fails with err, and nothing is sent.
type invalid struct{ err error }

var _ Querier = invalid{}

func (q invalid) DriverName() string                           { return "" }
func (q invalid) Rebind(query string) string                   { return query }
func (q invalid) BindNamed(string, any) (string, []any, error) { return "", nil, q.err }

func (q invalid) ExecContext(context.Context, string, ...any) (sql.Result, error) {
	return nil, q.err
}

func (q invalid) NamedExecContext(context.Context, string, any) (sql.Result, error) {
	return nil, q.err
}

func (q invalid) GetContext(context.Context, any, string, ...any) error    { return q.err }
func (q invalid) SelectContext(context.Context, any, string, ...any) error { return q.err }

func (q invalid) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	return nil, q.err
}

func (q invalid) QueryxContext(context.Context, string, ...any) (*sqlx.Rows, error) {
	return nil, q.err
}

// QueryRowContext returns a row whose Scan reports the error.
func (q invalid) QueryRowContext(context.Context, string, ...any) *sql.Row { return errrow.SQL(q.err) }

// PrepareContext reports the error.
func (q invalid) PrepareContext(context.Context, string) (*sql.Stmt, error) { return nil, q.err }

// QueryRowxContext returns a row whose Scan reports the error.
func (q invalid) QueryRowxContext(context.Context, string, ...any) *sqlx.Row {
	return errrow.New(q.err)
}
