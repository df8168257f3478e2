package uow

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/errrow"
)

// Handle is a unit's lazy transaction on one source. It has the methods of
// sqlx's ExtContext plus GetContext, SelectContext and NamedExecContext, so a
// repository written against repo.Querier accepts it as well as a *sqlx.DB or
// a *sqlx.Tx. The first statement begins the source's transaction (and the
// savepoints of enclosing nested units); later ones reuse it.
//
// A Handle is safe for concurrent use. Statements are serialised on the
// transaction's connection; a statement issued while a Rows or Row from the
// same transaction is still open fails with ErrBusy instead of corrupting the
// connection. A statement that fails marks the unit rollback-only (in
// PostgreSQL a failed statement aborts the transaction), except for
// sql.ErrNoRows; inside a nested unit only the nested unit is marked, and
// rolling it back to its savepoint clears the failure.
//
// After the unit finishes, every statement fails with ErrDone.
type Handle struct {
	u   *Unit
	db  *sqlx.DB
	err error
}

// Unit returns the unit the handle belongs to. Only transaction handles have
// it, which is what repo.Tx relies on.
func (h *Handle) Unit() *Unit { return h.u }

// DriverName returns the source's driver name.
func (h *Handle) DriverName() string {
	if h.db == nil {
		return ""
	}
	return h.db.DriverName()
}

// Rebind rewrites ? placeholders for the source's driver.
func (h *Handle) Rebind(query string) string {
	if h.db == nil {
		return query
	}
	return h.db.Rebind(query)
}

// BindNamed rewrites a query with :name parameters for the source's driver.
func (h *Handle) BindNamed(query string, arg any) (string, []any, error) {
	if h.db == nil {
		return "", nil, h.err
	}
	return h.db.BindNamed(query, arg)
}

// ExecContext runs a statement that returns no rows.
func (h *Handle) ExecContext(ctx context.Context, query string, args ...any) (res sql.Result, err error) {
	err = h.run(ctx, false, func(ctx context.Context, c *conn) (err error) {
		res, err = c.tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// NamedExecContext runs a statement with :name parameters bound from arg.
func (h *Handle) NamedExecContext(ctx context.Context, query string, arg any) (res sql.Result, err error) {
	err = h.run(ctx, false, func(ctx context.Context, c *conn) (err error) {
		res, err = c.tx.NamedExecContext(ctx, query, arg)
		return err
	})
	return res, err
}

// GetContext scans one row into dest; sql.ErrNoRows when there is none.
func (h *Handle) GetContext(ctx context.Context, dest any, query string, args ...any) error {
	return h.run(ctx, false, func(ctx context.Context, c *conn) error {
		return c.tx.GetContext(ctx, dest, query, args...)
	})
}

// SelectContext scans every row into the slice dest.
func (h *Handle) SelectContext(ctx context.Context, dest any, query string, args ...any) error {
	return h.run(ctx, false, func(ctx context.Context, c *conn) error {
		return c.tx.SelectContext(ctx, dest, query, args...)
	})
}

// QueryContext runs a query and returns its open rows; the transaction is busy
// until they are closed.
func (h *Handle) QueryContext(ctx context.Context, query string, args ...any) (rows *sql.Rows, err error) {
	err = h.run(ctx, true, func(ctx context.Context, c *conn) (err error) {
		rows, err = c.tx.QueryContext(ctx, query, args...)
		if err == nil {
			c.cursors = append(c.cursors, rows)
		}
		return err
	})
	return rows, err
}

// QueryxContext runs a query and returns its open rows; the transaction is
// busy until they are closed.
func (h *Handle) QueryxContext(ctx context.Context, query string, args ...any) (rows *sqlx.Rows, err error) {
	err = h.run(ctx, true, func(ctx context.Context, c *conn) (err error) {
		rows, err = c.tx.QueryxContext(ctx, query, args...)
		if err == nil {
			c.cursors = append(c.cursors, rows)
		}
		return err
	})
	return rows, err
}

// QueryRowxContext runs a query expected to return at most one row; the
// transaction is busy until the row is scanned. Errors, including the unit's
// (ErrDone), surface from Scan.
func (h *Handle) QueryRowxContext(ctx context.Context, query string, args ...any) *sqlx.Row {
	var row *sqlx.Row
	err := h.run(ctx, true, func(ctx context.Context, c *conn) error {
		row = c.tx.QueryRowxContext(ctx, query, args...)
		if row.Err() == nil {
			c.cursors = append(c.cursors, row)
		}
		return row.Err()
	})
	if row == nil {
		return errrow.New(err)
	}
	return row
}

// run acquires the unit's transaction on h's source and runs f on it with the
// connection held.
func (h *Handle) run(ctx context.Context, cursor bool, f func(ctx context.Context, c *conn) error) error {
	if h.err != nil {
		return h.err
	}
	c, err := h.u.conn(ctx, h.db)
	if err != nil {
		h.fail(err)
		return err
	}
	ctx, stop := h.u.bind(ctx, cursor)
	defer stop()
	c.mu.Lock()
	if err = c.usableLocked(); err == nil {
		err = f(ctx, c)
	}
	c.mu.Unlock()
	h.fail(err)
	return err
}

// fail marks the unit rollback-only after a failed statement.
func (h *Handle) fail(err error) {
	if err == nil || errors.Is(err, sql.ErrNoRows) || errors.Is(err, ErrDone) {
		return
	}
	h.u.t.mu.Lock()
	defer h.u.t.unlock()
	if h.u.activeLocked() == nil {
		h.u.failLocked(err)
	}
}

func noop() {}

// bind returns a context for one statement that is also cancelled when the
// unit's context ends (its Timeout, its caller's cancellation), for
// statements whose context does not descend from the unit: a repository bound
// explicitly and called with another context. A cursor's context must outlive
// the call (database/sql closes the rows when it ends), so for a cursor the
// link is left to end with the unit's context.
func (u *Unit) bind(ctx context.Context, cursor bool) (context.Context, func()) {
	if u.ctx.Done() == nil {
		return ctx, noop // the unit's context never ends
	}
	if s := From(ctx); s != nil && s.t == u.t {
		return ctx, noop // already descends from the unit
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(u.ctx, func() { cancel(context.Cause(u.ctx)) })
	if cursor {
		return ctx, noop
	}
	return ctx, func() { stop(); cancel(nil) }
}
