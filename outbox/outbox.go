package outbox

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/uow"
)

// Outbox records messages in the unit of work of the caller's context, on
// one database of the unit's manager. It is safe for concurrent use.
type Outbox struct {
	db *sqlx.DB
	q  *queries
}

// New returns the outbox in table (empty for DefaultTable) of db, one of the
// databases given to the uow.Manager whose units will record messages
// (uow.New, uow.WithSource), in dialect d. table must be a lowercase SQL
// identifier of at most 48 bytes ([ErrInvalidName]); its tables are made by
// [Schema].
func New(db *sqlx.DB, d Dialect, table string) (*Outbox, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("%w: nil database", ErrInvalidConfig)
	}
	t, err := tableName(table, DefaultTable)
	if err != nil {
		return nil, err
	}
	return &Outbox{db: db, q: newQueries(d, t)}, nil
}

// Table returns the outbox's table name.
func (o *Outbox) Table() string { return o.q.table }

// Record writes msgs to the outbox through the unit of work in ctx, so that
// they commit, and are then published, only if the unit's other work
// commits; a unit that rolls back leaves no trace of them. Messages of one
// Key are delivered in the order their units commit (see the package
// documentation); Record holds the key's row lock until the unit ends, so
// units recording the same key are serialised from that point on.
//
// Outside a unit Record returns an error matching uow.ErrNoUnit: it never
// writes in autocommit. Invalid messages (an empty Subject, an ID given
// twice, an oversized or non-UTF-8 field; see the Max constants) are refused
// with a [*MessageError] before anything is written. A failed write marks the
// unit rollback-only, so that a caller that ignores the error cannot commit
// some of the messages without the others.
func (o *Outbox) Record(ctx context.Context, msgs ...Message) error {
	u := uow.FromContext(ctx)
	if u == nil {
		return fmt.Errorf("outbox: Record outside a unit of work: %w", uow.ErrNoUnit)
	}
	if err := u.Err(); err != nil {
		return fmt.Errorf("outbox: Record: %w", err)
	}
	rows, err := prepare(msgs)
	if err != nil {
		return err
	}
	h := u.On(o.db)
	for _, r := range rows {
		if err := o.write(ctx, h, r); err != nil {
			_ = u.SetRollbackOnly()
			return fmt.Errorf("outbox: record %s: %w", r.id, err)
		}
	}
	return nil
}

func (o *Outbox) write(ctx context.Context, h *uow.Handle, r row) error {
	q := o.q
	switch {
	case r.key == "":
		_, err := h.ExecContext(ctx, q.insertPlain, r.id, r.subject, r.payload, r.headers)
		return err
	case q.d == Postgres:
		_, err := h.ExecContext(ctx, q.insertKeyed, r.key, r.id, r.subject, r.payload, r.headers)
		return err
	default:
		var seq int64
		if err := h.QueryRowContext(ctx, q.upsertKey, r.key).Scan(&seq); err != nil {
			return err
		}
		_, err := h.ExecContext(ctx, q.insertSeq, r.id, r.subject, r.key, seq, r.payload, r.headers)
		return err
	}
}
