// Package nopdriver is a database/sql driver that does nothing: no I/O, no
// parsing, no state. Statements succeed at once, queries return no rows. It
// exists so that benchmarks show what a transaction library itself costs,
// with the round trip to a server taken out.
//
// It registers nothing with database/sql; open it with [database/sql.OpenDB]:
//
//	db := sqlx.NewDb(sql.OpenDB(nopdriver.Connector{}), "postgres")
package nopdriver
