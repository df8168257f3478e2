package pgtest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Counts records the round trips made through a pool opened by OpenCounting:
// what the client sent, counted at the driver, so a test can prove that a
// code path did (or did not) talk to the database.
type Counts struct {
	Begins, Commits, Rollbacks, Execs, Queries atomic.Int64
}

// Total returns every counted round trip.
func (c *Counts) Total() int64 {
	return c.Begins.Load() + c.Commits.Load() + c.Rollbacks.Load() + c.Execs.Load() + c.Queries.Load()
}

// OpenCounting is like Open but counts every BEGIN, COMMIT, ROLLBACK and
// statement sent through the pool.
func OpenCounting(tb testing.TB, tag string) (*sqlx.DB, *Counts) {
	tb.Helper()
	pc, err := pq.NewConnector(URL(tb, tag))
	if err != nil {
		tb.Fatal(err)
	}
	counts := &Counts{}
	db := sqlx.NewDb(sql.OpenDB(&countingConnector{pc, counts}), "postgres")
	tb.Cleanup(func() {
		if n := db.Stats().InUse; n != 0 {
			tb.Errorf("pgtest: %d connections still in use at the end of the test", n)
		}
		db.Close()
	})
	return db, counts
}

type countingConnector struct {
	driver.Connector
	c *Counts
}

func (cc *countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{conn.(pqConn), cc.c}, nil
}

// pqConn is the method set of lib/pq's connection that database/sql uses.
type pqConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	driver.NamedValueChecker
}

type countingConn struct {
	pqConn
	c *Counts
}

func (cc *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	cc.c.Begins.Add(1)
	tx, err := cc.pqConn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &countingTx{tx, cc.c}, nil
}

func (cc *countingConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	cc.c.Execs.Add(1)
	return cc.pqConn.ExecContext(ctx, q, args)
}

func (cc *countingConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	cc.c.Queries.Add(1)
	return cc.pqConn.QueryContext(ctx, q, args)
}

type countingTx struct {
	driver.Tx
	c *Counts
}

func (t *countingTx) Commit() error {
	t.c.Commits.Add(1)
	return t.Tx.Commit()
}

func (t *countingTx) Rollback() error {
	t.c.Rollbacks.Add(1)
	return t.Tx.Rollback()
}
