package uow

import (
	"context"
	"database/sql/driver"
	"errors"
)

// This file holds Guard: a connector that refuses statements sent on the
// pool, in autocommit, while a unit is active in their context.

// ErrAutocommit is returned by a connection of a Guard connector for a
// statement sent outside any transaction while its context carries an active
// unit: the statement was sent on the pool (a *sql.DB, a *sqlx.DB, sqlc's
// New(db)) instead of the unit's handle (repo.From, Unit.On), so it would
// have committed at once, whatever became of the unit.
var ErrAutocommit = errors.New("uow: statement sent on the pool in autocommit while a unit is active in its context; use the unit's handle (repo.From, Unit.On, uowpgx.From)")

// Guard wraps c so that its connections fail, with ErrAutocommit and without
// sending anything, a statement (Exec, Query, Prepare) sent outside a
// transaction while its context carries an active unit. That is the trap
// of passing the pool where the unit's handle belongs: it compiles, runs, and
// silently autocommits inside Do. Statements outside a unit, or inside any
// transaction, and on a connection from Unit.Conn, are unaffected.
//
//	connector, _ := pq.NewConnector(dsn)
//	db := sqlx.NewDb(sql.OpenDB(uow.Guard(connector)), "postgres")
//
// Guard is meant for tests and development, and is cheap enough for
// production: one context lookup per statement outside a transaction. A
// guarded connection hides the driver's own type from sql.Conn.Raw.
func Guard(c driver.Connector) driver.Connector { return guardConnector{c} }

type guardConnector struct{ c driver.Connector }

func (g guardConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := g.c.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: conn}, nil
}

func (g guardConnector) Driver() driver.Driver { return g.c.Driver() }

// guardConn wraps a driver connection. database/sql never uses one
// connection from two goroutines at once, so its fields need no lock.
type guardConn struct {
	driver.Conn
	inTx   bool
	pinned bool
}

// check refuses a statement sent in autocommit under an active unit.
func (g *guardConn) check(ctx context.Context) error {
	if g.inTx || g.pinned {
		return nil
	}
	u := FromContext(ctx)
	if u == nil || u.err != nil {
		return nil
	}
	u.t.mu.Lock()
	active := u.activeLocked() == nil
	u.t.mu.Unlock()
	if active {
		return ErrAutocommit
	}
	return nil
}

func (g *guardConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if err := g.check(ctx); err != nil {
		return nil, err
	}
	if p, ok := g.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return g.Conn.Prepare(query)
}

func (g *guardConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := g.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip // database/sql prepares instead, which is checked
	}
	if err := g.check(ctx); err != nil {
		return nil, err
	}
	return e.ExecContext(ctx, query, args)
}

func (g *guardConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := g.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	if err := g.check(ctx); err != nil {
		return nil, err
	}
	return q.QueryContext(ctx, query, args)
}

func (g *guardConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var tx driver.Tx
	var err error
	if b, ok := g.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else if opts.Isolation != 0 || opts.ReadOnly {
		return nil, errors.New("uow: Guard: the driver supports no isolation level or read-only transactions")
	} else {
		//lint:ignore SA1019 the driver has no BeginTx: Begin is all there is
		tx, err = g.Conn.Begin()
	}
	if err != nil {
		return nil, err
	}
	g.inTx = true
	return guardTx{tx, g}, nil
}

func (g *guardConn) ResetSession(ctx context.Context) error {
	if r, ok := g.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (g *guardConn) IsValid() bool {
	if v, ok := g.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (g *guardConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := g.Conn.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (g *guardConn) Ping(ctx context.Context) error {
	if p, ok := g.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// guardTx clears its connection's transaction mark when it ends.
type guardTx struct {
	driver.Tx
	g *guardConn
}

func (t guardTx) Commit() error {
	t.g.inTx = false
	return t.Tx.Commit()
}

func (t guardTx) Rollback() error {
	t.g.inTx = false
	return t.Tx.Rollback()
}

var (
	_ driver.ConnPrepareContext = (*guardConn)(nil)
	_ driver.ExecerContext      = (*guardConn)(nil)
	_ driver.QueryerContext     = (*guardConn)(nil)
	_ driver.ConnBeginTx        = (*guardConn)(nil)
	_ driver.SessionResetter    = (*guardConn)(nil)
	_ driver.Validator          = (*guardConn)(nil)
	_ driver.NamedValueChecker  = (*guardConn)(nil)
	_ driver.Pinger             = (*guardConn)(nil)
)
