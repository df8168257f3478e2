package uowpgx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/uowkit/uowkit/internal/seam"
	"github.com/uowkit/uowkit/uow"
)

// Querier is what a repository on pgx needs: the DBTX interface sqlc
// generates for sql_package: pgx/v5 (Exec, Query, QueryRow, and CopyFrom
// and SendBatch for its copyfrom and batch queries). A *pgxpool.Pool, a
// pgx.Tx and what From returns all satisfy it.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

var (
	_ Querier = (*pgxpool.Pool)(nil)
	_ Querier = (pgx.Tx)(nil)
	_ Querier = handle{}
)

// errNilPool is what a nil pool's statements fail with.
var errNilPool = fmt.Errorf("uowpgx: nil pool: %w", uow.ErrUnknownSource)

// From returns the querier a repository should use on pool: the active
// unit's transaction on pool when ctx carries a unit (begun on first use),
// otherwise pool itself, in autocommit mode. Inside a unit, pool must be one
// of the manager's sources (WithPool): the statements on any other fail with
// uow.ErrUnknownSource rather than run outside the unit. A finished unit in
// ctx is still found: its statements fail with uow.ErrDone.
func From(ctx context.Context, pool *pgxpool.Pool) Querier {
	if u := uow.FromContext(ctx); u != nil {
		return handle{u: u, pool: pool}
	}
	if pool == nil {
		return failing{errNilPool}
	}
	return pool
}

// TxFrom returns the active unit's transaction on pool, or uow.ErrNoUnit
// when ctx carries no unit: for repository methods that must never run in
// autocommit mode.
func TxFrom(ctx context.Context, pool *pgxpool.Pool) (Querier, error) {
	u := uow.FromContext(ctx)
	if u == nil {
		return nil, uow.ErrNoUnit
	}
	return handle{u: u, pool: pool}, nil
}

// On returns unit u's transaction on pool, for repositories bound
// explicitly to a unit (uow.NewRunner's constructor), as Unit.On does for
// database/sql. A nil unit's statements fail with uow.ErrNoUnit.
func On(u *uow.Unit, pool *pgxpool.Pool) Querier {
	if u == nil {
		return failing{uow.ErrNoUnit}
	}
	return handle{u: u, pool: pool}
}

// handle is a unit's lazy transaction on one pool.
type handle struct {
	u    *uow.Unit
	pool *pgxpool.Pool
}

// run runs f on the unit's pgx transaction (see seam.Run).
func (h handle) run(ctx context.Context, cursor bool, f func(ctx context.Context, tx pgx.Tx) (seam.Cursor, error)) error {
	if h.pool == nil {
		return errNilPool
	}
	return seam.Run(h.u, h.pool, ctx, cursor, func(ctx context.Context, tx seam.Tx) (seam.Cursor, error) {
		return f(ctx, tx.(*pgxTx).tx)
	})
}

// fail reports an error a cursor met while being read.
func (h handle) fail(err error) {
	if err != nil {
		seam.Fail(h.u, h.pool, err)
	}
}

func (h handle) Exec(ctx context.Context, sql string, args ...any) (tag pgconn.CommandTag, err error) {
	err = h.run(ctx, false, func(ctx context.Context, tx pgx.Tx) (seam.Cursor, error) {
		var err error
		tag, err = tx.Exec(ctx, sql, args...)
		return nil, err
	})
	return tag, err
}

func (h handle) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	var r *rows
	err := h.run(ctx, true, func(ctx context.Context, tx pgx.Tx) (seam.Cursor, error) {
		pr, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		r = &rows{Rows: pr, h: h}
		return rowsCursor{r}, nil
	})
	if err != nil {
		return failedRows{err}, err
	}
	return r, nil
}

func (h handle) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	r, err := h.Query(ctx, sql, args...)
	return row{rows: r, err: err}
}

func (h handle) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (n int64, err error) {
	err = h.run(ctx, false, func(ctx context.Context, tx pgx.Tx) (seam.Cursor, error) {
		var err error
		n, err = tx.CopyFrom(ctx, table, columns, src)
		return nil, err
	})
	return n, err
}

func (h handle) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	var br *batch
	err := h.run(ctx, true, func(ctx context.Context, tx pgx.Tx) (seam.Cursor, error) {
		br = &batch{br: tx.SendBatch(ctx, b), h: h}
		return batchCursor{br}, nil
	})
	if err != nil {
		return failedBatch{err}
	}
	return br
}

// rows tracks pgx rows of a unit's transaction: they keep its connection
// busy until closed. A lock makes Close safe from another goroutine (a unit
// aborted while the rows are read): pgx's rows are not.
type rows struct {
	pgx.Rows
	h      handle
	mu     sync.Mutex
	closed bool
	cut    bool                      // closed by the unit, which finished while they were read
	fields []pgconn.FieldDescription // kept at close: pgx reuses its own for the next statement
}

// errCut is what rows and batches report when their unit finished while
// they were still being read: the rest was never read.
var errCut = fmt.Errorf("uowpgx: the unit finished while its rows were being read: %w", uow.ErrDone)

// rowsCursor is rows as the unit tracks them: the unit's Close cuts them.
type rowsCursor struct{ r *rows }

func (c rowsCursor) Open() bool { return c.r.Open() }

func (c rowsCursor) Close() {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if !c.r.closed {
		c.r.cut = true
		c.r.closeLocked()
	}
}

func (r *rows) Next() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.Rows.Next() {
		return true
	}
	r.closeLocked()
	return false
}

func (r *rows) closeLocked() {
	if !r.closed {
		r.closed = true
		r.fields = slices.Clone(r.Rows.FieldDescriptions())
		r.Rows.Close()
		r.h.fail(r.Rows.Err())
	}
}

func (r *rows) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLocked()
}

// Open reports whether the rows still hold the connection.
func (r *rows) Open() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed
}

func (r *rows) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.Rows.Err(); err != nil || !r.cut {
		return err
	}
	return errCut
}

func (r *rows) Scan(dest ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Rows.Scan(dest...)
}

func (r *rows) Values() ([]any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Rows.Values()
}

func (r *rows) RawValues() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Rows.RawValues()
}

func (r *rows) CommandTag() pgconn.CommandTag {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Rows.CommandTag()
}

func (r *rows) FieldDescriptions() []pgconn.FieldDescription {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.fields
	}
	return r.Rows.FieldDescriptions()
}

func (r *rows) Conn() *pgx.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Rows.Conn()
}

func (r *rows) TypeMap() *pgtype.Map {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Rows.TypeMap()
}

// row is QueryRow's result, as pgx's own: errors surface from Scan, and
// the rows are closed by it.
type row struct {
	rows pgx.Rows
	err  error
}

func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}

// batch tracks a batch's results, which keep the connection busy until
// closed, and reports their errors to the unit.
type batch struct {
	br     pgx.BatchResults
	h      handle
	mu     sync.Mutex
	closed bool
	cut    bool
}

func (b *batch) Exec() (pgconn.CommandTag, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return pgconn.CommandTag{}, errCut
	}
	tag, err := b.br.Exec()
	b.h.fail(err)
	return tag, err
}

func (b *batch) Query() (pgx.Rows, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return failedRows{errCut}, errCut
	}
	r, err := b.br.Query()
	b.h.fail(err)
	return r, err
}

func (b *batch) QueryRow() pgx.Row {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return row{err: errCut}
	}
	return batchRow{b.br.QueryRow(), b.h}
}

func (b *batch) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.br.Close()
	b.h.fail(err)
	return err
}

// Tx returns the transaction the batch runs in.
func (b *batch) Tx() pgx.Tx { return b.br.Tx() }

// Open reports whether the results still hold the connection.
func (b *batch) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.closed
}

// batchCursor is a batch as the unit tracks it: the unit's Close cuts it,
// and the batch's further results report errCut.
type batchCursor struct{ b *batch }

func (c batchCursor) Open() bool { return c.b.Open() }

func (c batchCursor) Close() {
	c.b.mu.Lock()
	c.b.cut = !c.b.closed
	c.b.mu.Unlock()
	_ = c.b.Close()
}

// batchRow reports a batched QueryRow's error to the unit.
type batchRow struct {
	r pgx.Row
	h handle
}

func (r batchRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if !errors.Is(err, pgx.ErrNoRows) {
		r.h.fail(err)
	}
	return err
}

// failedRows are the rows of a query that could not run.
type failedRows struct{ err error }

func (r failedRows) Close()                                       {}
func (r failedRows) Err() error                                   { return r.err }
func (r failedRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r failedRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r failedRows) Next() bool                                   { return false }
func (r failedRows) Scan(...any) error                            { return r.err }
func (r failedRows) Values() ([]any, error)                       { return nil, r.err }
func (r failedRows) RawValues() [][]byte                          { return nil }
func (r failedRows) Conn() *pgx.Conn                              { return nil }
func (r failedRows) TypeMap() *pgtype.Map                         { return nil }

// failing is a Querier, and BatchResults, whose every statement fails with
// err and sends nothing.
type failing struct{ err error }

func (f failing) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, f.err
}
func (f failing) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return failedRows(f), f.err
}
func (f failing) QueryRow(context.Context, string, ...any) pgx.Row { return row{err: f.err} }
func (f failing) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, f.err
}
func (f failing) SendBatch(context.Context, *pgx.Batch) pgx.BatchResults { return failedBatch(f) }

// failedBatch is the result of a batch that could not be sent.
type failedBatch struct{ err error }

func (f failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, f.err }
func (f failedBatch) Query() (pgx.Rows, error)         { return failedRows(f), f.err }
func (f failedBatch) QueryRow() pgx.Row                { return row{err: f.err} }
func (f failedBatch) Close() error                     { return f.err }
func (f failedBatch) Tx() pgx.Tx                       { return nil }
