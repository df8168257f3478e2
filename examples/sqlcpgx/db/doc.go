// Package db is the code sqlc generates from ../schema.sql and ../query.sql
// for pgx/v5: the row types ([Account], [Transfer]), one method of [Queries]
// per query (a COPY for [Queries.ImportAccounts], a batch for [Queries.Pay]),
// and [DBTX], the five methods the queries need.
//
// Everything here except this file is generated: edit the SQL and run
// `sqlc generate` in examples/sqlcpgx, never the Go.
//
// # Joining a unit of work
//
// [New] takes any [DBTX]. Inside uowkit, give it what joins the unit in the
// context, never the pool itself:
//
//	q := db.New(uowpgx.From(ctx, pool)) // inside m.Do: the unit's transaction
//
// db.New(pool) compiles too, but inside a unit its statements would run in
// autocommit, outside the unit's transaction; a pool whose config went
// through uowpgx.Guard refuses them with uow.ErrAutocommit. [Queries.WithTx]
// is not needed: a unit begins its transaction lazily and owns it.
// The package bank next door shows the way and the guard.
package db
