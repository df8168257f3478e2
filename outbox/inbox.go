package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/uow"
)

// InboxConfig configures an Inbox. Zero values mean the defaults.
type InboxConfig struct {
	// Table is the inbox table (default DefaultInboxTable). Give each
	// consumer (each projection fed by the same messages) a table of its
	// own.
	Table string
	// Observer, when set, is told of every message handled as a
	// uow.EventInbox (Count 1 when applied, 0 for a duplicate; Err).
	Observer uow.Observer
}

// Inbox makes a consumer apply each message once, although the relay and
// the broker deliver it at least once: it records the ids of the messages
// applied in the same transaction as their effects. It is safe for
// concurrent use.
type Inbox struct {
	db    *sqlx.DB
	table string
	obs   uow.Observer
	claim string
}

// NewInbox returns the inbox in c.Table of db, one of the databases of the
// uow.Manager that will run the handlers, in dialect d. Its table is made by
// [InboxSchema].
func NewInbox(db *sqlx.DB, d Dialect, c InboxConfig) (*Inbox, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("%w: nil database", ErrInvalidConfig)
	}
	t, err := tableName(c.Table, DefaultInboxTable)
	if err != nil {
		return nil, err
	}
	in := &Inbox{db: db, table: t, obs: c.Observer}
	if d == Postgres {
		in.claim = `INSERT INTO ` + t + ` (message_id) VALUES ($1) ON CONFLICT (message_id) DO NOTHING`
	} else {
		in.claim = `INSERT OR IGNORE INTO ` + t + ` (message_id) VALUES (?)`
	}
	return in, nil
}

// Table returns the inbox's table name.
func (in *Inbox) Table() string { return in.table }

// Handle applies the message messageID once. It runs one unit of work with
// m (m.Do, with opts): it first records messageID in the inbox; if the
// inbox already had it, the message is a duplicate and Handle returns
// applied == false without calling fn; otherwise it calls fn in the same
// unit, so that fn's changes and the inbox's record commit together or not
// at all. Acknowledge the message to the broker only once Handle returns
// nil, applied or not: a failure (fn's error, returned as is, or the
// commit's) leaves no record, and the redelivered message is applied then.
//
// Concurrent deliveries of one message are applied once: the second waits
// for the first's unit to end (on PostgreSQL, for its row in the inbox's
// unique index) and is a duplicate if it committed. With a unit already
// active in ctx, Handle joins it (by default), and the outer unit's commit
// decides.
func (in *Inbox) Handle(ctx context.Context, m *uow.Manager, messageID string, fn func(ctx context.Context) error, opts ...uow.Option) (applied bool, err error) {
	if m == nil || fn == nil {
		return false, fmt.Errorf("%w: Handle: nil manager or function", ErrInvalidConfig)
	}
	if messageID == "" {
		return false, &MessageError{Reason: "empty message id"}
	}
	if reason := checkText(messageID, MaxIDLen); reason != "" {
		return false, &MessageError{ID: messageID, Reason: "id " + reason}
	}
	e := uow.Event{Kind: uow.EventInbox, Source: in.table}
	var start time.Time
	if in.obs != nil {
		ctx = in.obs.Start(ctx, e)
		start = time.Now()
	}
	err = m.Do(ctx, func(ctx context.Context) error {
		applied = false // a retried attempt starts over
		res, err := uow.FromContext(ctx).On(in.db).ExecContext(ctx, in.claim, messageID)
		if err != nil {
			return fmt.Errorf("outbox: inbox %s: %w", messageID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("outbox: inbox %s: %w", messageID, err)
		}
		if n == 0 {
			return nil // a duplicate
		}
		if err := fn(ctx); err != nil {
			return err
		}
		applied = true
		return nil
	}, opts...)
	if err != nil {
		applied = false
	}
	if in.obs != nil {
		if applied {
			e.Count = 1
		}
		e.Err = err
		e.Duration = time.Since(start)
		in.obs.End(ctx, e)
	}
	return applied, err
}
