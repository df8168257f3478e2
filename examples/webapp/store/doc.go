// Package store implements the service's repositories with sqlx, for
// PostgreSQL and SQLite. Command repositories are handed the unit's handle
// explicitly (see package app); the read side finds the request's unit in the
// context with repo.From.
package store
