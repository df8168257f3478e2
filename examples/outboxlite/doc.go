// Package outboxlite tests package outbox on SQLite (modernc.org/sqlite):
// recording in units of work, relaying, the lease and the inbox. It holds
// tests only; they live in the examples module so that the core module does
// not require an SQLite driver.
package outboxlite
