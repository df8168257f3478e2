// Package footprint holds the test that keeps the core small: a program
// that imports uow, repo, retry and middleware/nethttp links no database
// driver, registers none, and depends on nothing outside the standard
// library but sqlx.
package footprint
