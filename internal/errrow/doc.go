// Package errrow makes *sqlx.Row values that fail with a given error, for
// queriers that must refuse a statement (a finished unit, a nil database)
// behind an API whose QueryRowx cannot return an error of its own.
package errrow
