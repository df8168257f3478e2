// Package pgnotify wakes an outbox relay when PostgreSQL notifies the
// outbox's channel, so that messages are relayed as soon as their unit
// commits rather than at the relay's next poll.
//
// The outbox's trigger (package outbox, its PostgreSQL schema) calls
// pg_notify on a channel named after the outbox table when a transaction
// records messages; PostgreSQL delivers the notification when that
// transaction commits, and never for one that rolls back. A [Listener] holds
// a dedicated connection (never a pooled one: LISTEN belongs to a session,
// so it cannot work through PgBouncer's transaction pooling, and the relay's
// polling covers that case), LISTENs on the channel and signals its channel
// [Listener.C] on every notification. Signals coalesce: C has room for one,
// and a relay's round reads every committed message anyway.
//
//	l, err := pgnotify.New(databaseURL, "uowkit_outbox", pgnotify.Config{})
//	go l.Run(ctx)
//	relay, err := outbox.NewRelay(db, outbox.Postgres, pub, outbox.RelayConfig{Wake: l.C()})
//
// When the connection drops, Run reconnects with a bounded exponential
// backoff and signals once after every (re)connection, so that a message
// committed while it was not listening does not wait for the poll.
// Notifications are an optimisation: a relay with a Wake still polls.
package pgnotify
