// Package bank is a small service on code that sqlc generates for pgx/v5
// (package [github.com/uowkit/uowkit/examples/sqlcpgx/db]): accounts,
// transfers and payments between them, each public method one unit of work
// on a [pgxpool.Pool].
//
// # Binding sqlc's queries to a unit
//
// Every method builds the queries inside [uow.Manager.Do] on what
// [uowpgx.From] returns: the unit's transaction on the pool when the
// context carries a unit, the pool itself, in autocommit, otherwise
// ([Bank.Accounts] relies on the latter, with no unit of its own). It
// satisfies sqlc's [db.DBTX], so every kind of generated query joins the
// unit: :one and :many (Query, QueryRow), :exec and :execrows (Exec),
// :copyfrom ([Bank.Import], CopyFrom) and :batchexec ([Bank.Pay],
// SendBatch). The transaction begins at the first query and commits or
// rolls back with the unit; each method joins a unit already in its
// context.
//
// # The pool-instead-of-unit trap
//
// db.New(pool) compiles too, and inside a unit its statements would run in
// autocommit, outside the unit's transaction: written for good even when
// the unit rolls back. [OpenPool] passes the pool's config through
// [uowpgx.Guard], so such a statement fails with an error matching
// [uow.ErrAutocommit] and sends nothing.
package bank
