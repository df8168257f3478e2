// Command webapp is the uowkit example service: teams with a limited number
// of places, and players that join them and move between them.
//
//	go run ./examples/webapp                                   # SQLite file, nothing to install
//	DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go run ./examples/webapp
//
// Environment (see the README's "Endpoints" for the API):
//
//   - DATABASE_URL: PostgreSQL, lib/pq syntax; unset: SQLite.
//   - SQLITE_PATH: the SQLite file; default webapp.db under uowkit in the
//     user's cache directory (~/.cache/uowkit/webapp.db on Linux).
//   - DB_MAX_CONNS: the PostgreSQL pool's size; default 20.
//   - REQUEST_TIMEOUT: each request's deadline; default 10s. A request
//     still running then rolls back and gets 504.
//   - ADDR: default :8080.
//   - LOG_LEVEL: debug, info, warn, error; default info.
//   - SHUTDOWN_GRACE: default 15s: how long requests in flight at SIGINT or
//     SIGTERM may take to finish before they are cancelled.
//   - OTEL_EXPORTER_OTLP_ENDPOINT: where to export traces; unset: none.
//   - NATS_URL: a NATS server with JetStream; unset: one embedded in the
//     process (random loopback port, temporary directory).
//   - REPLICA_URLS: PostgreSQL streaming replicas (comma-separated) for the
//     read-only units.
//   - CONSISTENCY_WAIT: default 2s: how long a query with
//     X-Consistency-Token waits for the projection before a 503.
//
// At start it logs these settings, the database's without its password,
// and which NATS it uses (embedded and its directory, or the URL).
package main
