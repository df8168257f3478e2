// Package uowpgx lets a unit of work span pgx's own pool
// (github.com/jackc/pgx/v5/pgxpool), alone or next to database/sql sources,
// and gives repositories a handle with pgx's shape: the DBTX interface that
// sqlc generates for sql_package: pgx/v5.
//
// # Setup
//
// A pool is a source of a manager, like a *sqlx.DB:
//
//	m := uow.New(nil, uowpgx.WithPool("main", pool))        // pgx only
//	m := uow.New(db, uowpgx.WithPool("events", eventsPool)) // next to database/sql
//
// Repositories find the unit's transaction on the pool through the context,
// as repo.From does for database/sql:
//
//	q := sqlcdb.New(uowpgx.From(ctx, pool)) // inside Do: the unit's transaction
//
// Everything a unit promises holds for a pgx source: lazy BEGIN, isolation,
// read-only, timeout, propagation (join, nested savepoints, requires-new,
// mandatory), rollback-only, hooks, retries of 40001/40P01 at any statement
// and at COMMIT, commit outcomes reported exactly (partial, unknown), and
// cancellation that always releases the connection.
//
// # What joins the unit
//
// Exec, Query, QueryRow, CopyFrom and SendBatch on what From returns run in
// the unit's transaction. Statements are serialised on its connection: one
// runs at a time, and a statement issued while Rows or BatchResults of the
// same transaction are still open fails with uow.ErrBusy instead of
// corrupting the connection. A unit that finishes (or whose context ends)
// while Rows are open closes them first, so a rollback never races a query
// (pgx issue #2332). The errors a query reports while its rows are read
// mark the unit rollback-only, as a failed Exec does.
//
// # The trap
//
// Calling the pool directly inside Do (pool.Exec, sqlc's New(pool)) compiles
// and runs in autocommit: its work survives the unit's rollback. TxFrom
// refuses to run outside a unit, and Guard makes the pool itself refuse a
// connection to a statement whose context carries an active unit
// (uow.ErrAutocommit).
package uowpgx
