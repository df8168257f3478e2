// Package db is the code sqlc generates from ../schema.sql and ../query.sql
// for database/sql: the row types ([Account], [Transfer]), one method of
// [Queries] per query, and [DBTX], the four methods the queries need.
//
// Everything here except this file is generated: edit the SQL and run
// `sqlc generate` in examples/sqlc, never the Go.
//
// # Joining a unit of work
//
// [New] takes any [DBTX]. Inside uowkit, give it what joins the unit in
// the context, never the pool itself:
//
//	q := db.New(repo.From(ctx, pool))            // inside m.Do: the unit's transaction
//	q := db.New(u.On(pool))                      // in a uow.Runner's build func
//
// db.New(pool) compiles too, but inside a unit its statements would run
// in autocommit, outside the unit's transaction; a pool opened on a
// uow.Guard connector refuses them with uow.ErrAutocommit. [Queries.WithTx]
// is not needed: a unit begins its transaction lazily and owns it.
// The package bank next door shows both ways and the guard.
package db
