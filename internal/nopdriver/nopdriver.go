package nopdriver

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
)

// Connector is a [driver.Connector] whose connections do nothing.
type Connector struct{}

var _ driver.Connector = Connector{}

// Connect returns a new do-nothing connection.
func (Connector) Connect(context.Context) (driver.Conn, error) { return &conn{}, nil }

// Driver returns the do-nothing driver.
func (Connector) Driver() driver.Driver { return Driver{} }

// Driver is a [driver.Driver] whose connections do nothing; the name passed
// to Open is ignored.
type Driver struct{}

// Open returns a new do-nothing connection.
func (Driver) Open(string) (driver.Conn, error) { return &conn{}, nil }

var errClosed = errors.New("nopdriver: connection closed")

type conn struct{ closed bool }

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
)

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(context.Context, string) (driver.Stmt, error) {
	if c.closed {
		return nil, errClosed
	}
	return stmt{}, nil
}

func (c *conn) Close() error { c.closed = true; return nil }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) {
	if c.closed {
		return nil, errClosed
	}
	return tx{}, nil
}

func (c *conn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	if c.closed {
		return nil, errClosed
	}
	return result{}, nil
}

func (c *conn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	if c.closed {
		return nil, errClosed
	}
	return rows{}, nil
}

type tx struct{}

func (tx) Commit() error   { return nil }
func (tx) Rollback() error { return nil }

type stmt struct{}

var (
	_ driver.StmtExecContext  = stmt{}
	_ driver.StmtQueryContext = stmt{}
)

func (stmt) Close() error  { return nil }
func (stmt) NumInput() int { return -1 }

func (stmt) Exec([]driver.Value) (driver.Result, error) { return result{}, nil }
func (stmt) Query([]driver.Value) (driver.Rows, error)  { return rows{}, nil }

func (stmt) ExecContext(context.Context, []driver.NamedValue) (driver.Result, error) {
	return result{}, nil
}

func (stmt) QueryContext(context.Context, []driver.NamedValue) (driver.Rows, error) {
	return rows{}, nil
}

// result reports one affected row, so code that checks RowsAffected
// takes its success path.
type result struct{}

func (result) LastInsertId() (int64, error) { return 0, nil }
func (result) RowsAffected() (int64, error) { return 1, nil }

// rows has no columns and no rows.
type rows struct{}

func (rows) Columns() []string              { return nil }
func (rows) Close() error                   { return nil }
func (rows) Next(dest []driver.Value) error { return io.EOF }
