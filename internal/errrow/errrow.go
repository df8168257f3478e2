package errrow

import (
	"context"
	"database/sql"
	"time"

	"github.com/jmoiron/sqlx"
)

// New returns a *sqlx.Row whose Err and Scan return err. sqlx offers no
// constructor, so it is made by a query on a zero transaction with a context
// that is already done with err: database/sql checks the context before
// anything else, so no connection is touched.
func New(err error) *sqlx.Row {
	tx := &sqlx.Tx{Tx: new(sql.Tx)}
	return tx.QueryRowxContext(doneCtx{context.Background(), err}, "")
}

// doneCtx is a context that is done, with err as its Err.
// SQL returns a *sql.Row whose Scan (and Err) return err, made the same way.
func SQL(err error) *sql.Row {
	return new(sql.Tx).QueryRowContext(doneCtx{context.Background(), err}, "")
}

type doneCtx struct {
	context.Context
	err error
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c doneCtx) Done() <-chan struct{}       { return closed }
func (c doneCtx) Err() error                  { return c.err }
func (c doneCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
