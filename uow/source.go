package uow

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/seam"
)

// This file is the seam between a unit and a kind of database: what the
// scope and commit logic needs from a source (begin with options, commit,
// roll back, run a savepoint statement, tell whether an error leaves the
// transaction unusable: internal/seam's Backend and Tx), and its
// database/sql implementation. An adapter for another driver (uowpgx, for
// pgx's own pool) implements seam.Backend and plugs in through
// seam.AddSource; nothing else in the package changes.

// source is one database of a manager.
type source struct {
	name    string
	index   int
	db      *sqlx.DB // nil for a source that is not database/sql
	key     any      // what identifies the source: db, or an adapter's pool
	backend seam.Backend
	// replicas serve its read-only units (WithReplicas); nil for none.
	replicas *replicaSet
}

// sqlBackend is a database/sql source, through sqlx.
type sqlBackend struct{ db *sqlx.DB }

func (s sqlBackend) Begin(ctx context.Context, o seam.TxOptions) (seam.Tx, error) {
	opts := &sql.TxOptions{Isolation: o.Isolation, ReadOnly: o.ReadOnly}
	if ctx.Done() == nil {
		tx, err := s.db.BeginTxx(ctx, opts)
		if err != nil {
			return nil, err
		}
		return sqlTx{tx}, nil
	}
	// database/sql honours ctx while it waits for a pool connection, but
	// the BEGIN itself is the driver's, and lib/pq sends it before it
	// watches ctx: behind PgBouncer, a BEGIN queued for a server connection
	// would outwait the unit's deadline. So the BEGIN runs on a goroutine
	// of its own. When ctx ends, a BEGIN that honours it (a wait for the
	// pool, pgx) returns within abandonAfter, and its result is taken as
	// usual; one that does not is abandoned: database/sql rolls it back
	// once it completes (its ctx has ended), and its connection goes back to
	// the pool.
	done := make(chan beginResult, 1)
	go func() {
		tx, err := s.db.BeginTxx(ctx, opts)
		done <- beginResult{tx, err}
	}()
	var r beginResult
	select {
	case r = <-done:
	case <-ctx.Done():
		timer := time.NewTimer(abandonAfter)
		select {
		case r = <-done:
			timer.Stop()
		case <-timer.C:
			go func() {
				if r := <-done; r.tx != nil {
					_ = r.tx.Rollback()
				}
			}()
			return nil, fmt.Errorf("uow: BEGIN not answered: %w", context.Cause(ctx))
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return sqlTx{r.tx}, nil
}

// abandonAfter is how long, once a unit's context has ended, it waits for
// a BEGIN in flight to give up by itself before abandoning it.
const abandonAfter = 100 * time.Millisecond

// beginResult is what a BEGIN on its own goroutine returns.
type beginResult struct {
	tx  *sqlx.Tx
	err error
}

// BeginAttempts allows one more BEGIN per idle connection, each of which may
// have been broken while it sat in the pool (a server restart breaks them
// all), and one on a new connection; at most 64.
func (s sqlBackend) BeginAttempts() int { return min(s.db.Stats().Idle+1, 64) }

func (sqlBackend) Fatal(err error) bool { return !errors.Is(err, sql.ErrNoRows) }

// XactStatus asks a pooled connection, outside any transaction, for the
// fate of transaction id.
func (s sqlBackend) XactStatus(ctx context.Context, id string) (string, error) {
	var st sql.NullString
	err := s.db.QueryRowContext(ctx, xactStatusQuery, id).Scan(&st)
	return st.String, err
}

// The statements that resolve an unknown commit outcome (see
// ResolveOutcomes). The id travels as text, which every driver scans and
// binds without knowing the type xid8.
const (
	xactIDQuery     = `SELECT pg_current_xact_id_if_assigned()::text`
	xactStatusQuery = `SELECT pg_xact_status($1::text::xid8)`
)

// sqlTx is a database/sql transaction.
type sqlTx struct{ tx *sqlx.Tx }

func (t sqlTx) Commit() error { return t.tx.Commit() }

func (t sqlTx) Rollback() error {
	err := t.tx.Rollback()
	if errors.Is(err, sql.ErrTxDone) || errors.Is(err, driver.ErrBadConn) {
		// database/sql already rolled it back, or the connection broke (a
		// cancelled statement makes lib/pq drop it): database/sql closes
		// it, and the server rolls back with the session.
		return nil
	}
	return err
}

// XactID returns the transaction's id, if it was assigned one (it wrote).
func (t sqlTx) XactID(ctx context.Context) (string, bool, error) {
	var id sql.NullString
	if err := t.tx.QueryRowContext(ctx, xactIDQuery).Scan(&id); err != nil {
		return "", false, err
	}
	return id.String, id.Valid, nil
}

func (t sqlTx) Exec(ctx context.Context, stmt string) error {
	_, err := t.tx.ExecContext(ctx, stmt)
	return err
}

// Prepare prepares the transaction for a two-phase commit and releases its
// connection. BEGIN follows PREPARE in the same round trip, so that
// database/sql's Rollback, which it needs to release the connection, finds
// a transaction to end (lib/pq drops a connection whose Rollback finds
// none) and ends an empty one.
func (t sqlTx) Prepare(ctx context.Context, gid string) error {
	if _, err := t.tx.ExecContext(ctx, "PREPARE TRANSACTION '"+gid+"'; BEGIN"); err != nil {
		_ = t.tx.Rollback()
		return err
	}
	return t.tx.Rollback()
}

// ExecOutside runs query on a pooled connection, outside any transaction.
func (s sqlBackend) ExecOutside(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// QueryOutside runs query on a pooled connection, outside any transaction,
// and returns its rows as text.
func (s sqlBackend) QueryOutside(ctx context.Context, query string, args ...any) ([][]string, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
		}
		out = append(out, row)
	}
	return out, rows.Err()
}
