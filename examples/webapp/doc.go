// Command webapp is the uowkit example service: teams with a limited number
// of places, and players that join them and move between them.
//
//	go run ./examples/webapp                                   # SQLite file, nothing to install
//	DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go run ./examples/webapp
//
// Environment: DATABASE_URL (PostgreSQL, lib/pq syntax; unset: SQLite),
// SQLITE_PATH (default uowkit-webapp.db in the system's temporary directory),
// ADDR (default :8080), LOG_LEVEL (debug, info, warn, error; default info),
// SHUTDOWN_GRACE (default 15s: how long requests in flight at SIGINT or
// SIGTERM may take to finish before they are cancelled).
package main
