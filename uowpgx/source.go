package uowpgx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/uowkit/uowkit/internal/seam"
	"github.com/uowkit/uowkit/uow"
)

// WithPool adds pool to a manager as the source named name: units then span
// it as they span database/sql sources. WithPool panics, when the manager
// is made, for an empty name, a nil pool, or a name or pool already added.
func WithPool(name string, pool *pgxpool.Pool) uow.ManagerOption {
	if pool == nil {
		return seam.AddSource(name, nil, nil).(uow.ManagerOption)
	}
	return seam.AddSource(name, pool, backend{pool}).(uow.ManagerOption)
}

// rollbackTimeout bounds a ROLLBACK, which runs when the unit's own context
// may already have ended.
const rollbackTimeout = 10 * time.Second

// backend begins pgx transactions on a pool.
type backend struct{ pool *pgxpool.Pool }

// ownBegin marks the context of a unit's own BEGIN, which Guard lets through.
type ownBegin struct{}

func (b backend) Begin(ctx context.Context, o seam.TxOptions) (seam.Tx, error) {
	iso, err := isolation(o.Isolation)
	if err != nil {
		return nil, err
	}
	opts := pgx.TxOptions{IsoLevel: iso}
	if o.ReadOnly {
		opts.AccessMode = pgx.ReadOnly
	}
	tx, err := b.pool.BeginTx(context.WithValue(ctx, ownBegin{}, true), opts)
	if err != nil {
		return nil, err
	}
	return &pgxTx{tx: tx, ctx: ctx}, nil
}

// BeginAttempts allows one more BEGIN per idle connection, each of which may
// have been broken while it sat in the pool, and one on a new connection; at
// most 64.
func (b backend) BeginAttempts() int { return min(int(b.pool.Stat().IdleConns())+1, 64) }

func (backend) Fatal(err error) bool { return !errors.Is(err, pgx.ErrNoRows) }

// XactStatus asks a pooled connection, outside any transaction, for the
// fate of transaction id (see uow.ResolveOutcomes). ctx carries no unit, so
// Guard lets it through.
func (b backend) XactStatus(ctx context.Context, id string) (string, error) {
	var st *string
	if err := b.pool.QueryRow(ctx, `SELECT pg_xact_status($1::text::xid8)`, id).Scan(&st); err != nil {
		return "", err
	}
	if st == nil {
		return "", nil
	}
	return *st, nil
}

// ExecOutside runs query on a pooled connection, outside any unit (see
// uow.TwoPhase).
func (b backend) ExecOutside(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := b.pool.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// QueryOutside runs query on a pooled connection, outside any unit, and
// returns its rows as text (the query casts its columns to text).
func (b backend) QueryOutside(ctx context.Context, query string, args ...any) ([][]string, error) {
	rows, err := b.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals := make([]*string, len(rows.FieldDescriptions()))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			if v != nil {
				row[i] = *v
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// errIsolation reports an isolation level PostgreSQL has no name for.
var errIsolation = errors.New("uowpgx: isolation level not supported by PostgreSQL")

func isolation(l sql.IsolationLevel) (pgx.TxIsoLevel, error) {
	switch l {
	case sql.LevelDefault:
		return "", nil
	case sql.LevelReadUncommitted:
		return pgx.ReadUncommitted, nil
	case sql.LevelReadCommitted:
		return pgx.ReadCommitted, nil
	case sql.LevelRepeatableRead, sql.LevelSnapshot:
		return pgx.RepeatableRead, nil
	case sql.LevelSerializable, sql.LevelLinearizable:
		return pgx.Serializable, nil
	}
	return "", fmt.Errorf("%w: %v", errIsolation, l)
}

// pgxTx is a unit's transaction on a pool. ctx is the one it was begun
// with: the unit cancels it to interrupt a COMMIT in flight.
type pgxTx struct {
	tx  pgx.Tx
	ctx context.Context
}

func (t *pgxTx) Commit() error { return t.tx.Commit(t.ctx) }

func (t *pgxTx) Rollback() error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), rollbackTimeout)
	defer cancel()
	err := t.tx.Rollback(ctx)
	if err == nil || errors.Is(err, pgx.ErrTxClosed) || t.tx.Conn().IsClosed() {
		// Already over, or the connection is gone (pgx closes it when a
		// statement was interrupted): the server rolls back with the
		// session, and the pool discards the connection.
		return nil
	}
	return err
}

// XactID returns the transaction's id, if it was assigned one (it wrote).
func (t *pgxTx) XactID(ctx context.Context) (string, bool, error) {
	var id *string
	if err := t.tx.QueryRow(ctx, `SELECT pg_current_xact_id_if_assigned()::text`).Scan(&id); err != nil {
		return "", false, err
	}
	if id == nil {
		return "", false, nil
	}
	return *id, true, nil
}

// Prepare prepares the transaction for a two-phase commit (see
// uow.TwoPhase) and releases its connection: pgx's Rollback on the session,
// which PREPARE left idle, only draws a warning.
func (t *pgxTx) Prepare(ctx context.Context, gid string) error {
	if _, err := t.tx.Exec(ctx, "PREPARE TRANSACTION '"+gid+"'"); err != nil {
		_ = t.Rollback()
		return err
	}
	return t.Rollback()
}

func (t *pgxTx) Exec(ctx context.Context, stmt string) error {
	_, err := t.tx.Exec(ctx, stmt)
	return err
}

// Guard makes cfg's pool refuse to hand out a connection for a statement
// whose context carries an active unit: a statement sent on the pool itself
// (pool.Exec, sqlc's New(pool)) instead of the unit's handle (From, TxFrom),
// which would have committed at once whatever became of the unit. The
// statement fails with uow.ErrAutocommit and nothing is sent. Everything
// that takes a connection of the pool under an active unit's context is
// refused the same way, pool.Begin, pool.Acquire and pool.Ping included:
// work that must be independent of the unit runs in a unit of its own
// (uow.Propagate(uow.RequiresNew)) or on a context without the unit. The
// unit's own BEGIN, and anything outside a unit, is unaffected. An
// existing PrepareConn runs first.
//
//	cfg, _ := pgxpool.ParseConfig(dsn)
//	uowpgx.Guard(cfg)
//	pool, _ := pgxpool.NewWithConfig(ctx, cfg)
func Guard(cfg *pgxpool.Config) {
	prev := cfg.PrepareConn
	cfg.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) {
		if prev != nil {
			if ok, err := prev(ctx, c); !ok || err != nil {
				return ok, err
			}
		}
		if ctx.Value(ownBegin{}) == nil && seam.Active(uow.FromContext(ctx)) {
			return true, uow.ErrAutocommit
		}
		return true, nil
	}
}
