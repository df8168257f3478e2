// Package outbox publishes messages reliably from units of work: the
// transactional outbox. A message is written to an outbox table in the
// same transaction as the change it announces, and a relay publishes the
// committed messages to a broker afterwards.
//
// # Why not an after-commit hook
//
// uow.AfterCommit runs once the data is durable, but in memory: a crash, a
// deploy or a broker outage between the COMMIT and the publish loses the
// event for ever, while the change it announces stays. With the outbox the
// message is part of the transaction: if the change commits, the message is
// in the database and will be published; if it rolls back, the message never
// existed.
//
// # Recording
//
// An [Outbox] ([New]) is bound to one database of a uow.Manager. [Outbox.Record]
// writes through the unit of work in the context, and refuses to write
// without one (uow.ErrNoUnit):
//
//	err := m.Do(ctx, func(ctx context.Context) error {
//		if err := orders.Add(ctx, o); err != nil {
//			return err
//		}
//		return ob.Record(ctx, outbox.Message{Subject: "orders.created", Key: o.Customer, Payload: body})
//	})
//
// # Guarantees
//
// At least once, never a rolled-back message: a relay reads only committed
// rows, publishes them, and marks them delivered once the [Publisher]
// reports the broker's acknowledgement. A crash between the acknowledgement
// and the mark publishes a message again: consumers drop duplicates by
// Message.ID ([Inbox]).
//
// Per key, in commit order: messages with the same Key are published in
// the order their units committed. Record upserts the key's row in the keys
// table in the same statement that inserts the message, before the
// message's id is drawn; the row lock is held until the unit ends, so a
// second writer of the key waits, and takes its id only once the first has
// committed (or rolled back). For one key, id order is therefore commit
// order, and key_seq numbers the key's messages 1, 2, 3... Messages of
// different keys, and messages without a key (which take no lock), have no
// order: there is no global order. Units that record the same key are
// serialised from Record to their end: keep such units short, or record
// late in them.
//
// No message is skipped: a relay does not remember "the last id it
// delivered" (a transaction that drew a lower id may commit after a higher
// one is delivered, and a cursor would skip it for ever); every round reads
// the undelivered rows in id order.
//
// # Relaying
//
// A [Relay] ([NewRelay]) runs rounds ([Relay.Run], or [Relay.Deliver] for
// one): it reads up to Batch undelivered messages in id order, publishes
// them one at a time, and stops at the first failure, so that nothing of
// the same key overtakes the failed message; it counts the attempt on the
// row (attempts, last_error) and backs off. A message the broker refuses
// for ever blocks everything behind it (head-of-line blocking): watch
// [Relay.Lag] and the failures the Observer reports.
//
// Several instances may run: a lease row, taken and renewed with one
// statement on the database's clock, lets one instance publish at a time;
// the others check it every Poll and take over when the holder stops
// renewing it (it crashed). A holder that cannot renew stops publishing,
// and a Publish still running when its lease runs out is cancelled.
// Stopping Run releases the lease, so a successor starts at once. Unlike a
// session advisory lock, the lease works through PgBouncer's transaction
// pooling and on SQLite.
//
// Between rounds Run waits for Poll or for RelayConfig.Wake, which package
// github.com/uowkit/uowkit/uowpgx/pgnotify feeds from PostgreSQL's
// LISTEN/NOTIFY: the outbox's trigger notifies its channel when a unit that
// recorded messages commits. Delivered messages are deleted once older than
// Retain.
//
// # Consuming
//
// [Inbox.Handle] applies a message once: it records the message's id in an
// inbox table in the same unit as the consumer's changes, and skips ids it
// has already seen.
//
// # Schema
//
// [Schema] and [InboxSchema] return the DDL for PostgreSQL and SQLite;
// [SchemaFiles] holds the same SQL files to copy into migrations;
// [CreateSchema] and [CreateInboxSchema] run it, for tests and examples.
//
// The package imports no database driver: it runs on database/sql and sqlx
// with whatever driver the application registered.
package outbox
