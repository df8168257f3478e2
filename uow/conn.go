package uow

import (
	"context"
	"database/sql/driver"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// This file holds pinned connections: session-level work outside the
// unit's transactions, bound to the unit's life.

// Conn returns a dedicated connection of db (one of the manager's
// databases), outside the unit's transactions, for session-level work such
// as SET or session advisory locks. Waiting for it honours ctx. It is
// closed, not returned to the pool, when the root unit finishes, so no
// session state leaks to other users of the pool.
//
// Conn is unsafe behind a pooler in transaction mode (PgBouncer's
// pool_mode = transaction, or statement): such a pooler lends the client a
// server connection for one transaction at a time, so the statements sent
// on the returned connection outside a transaction may each run in another
// server session, and what one of them leaves in its session (SET, a
// session advisory lock, LISTEN, a temporary table, PREPARE) stays on a
// server connection that other clients are handed next, where closing the
// Conn undoes nothing. There, keep such work in the unit's transaction:
// StatementTimeout and LockTimeout, SET LOCAL, AdvisoryLock. Conn does not
// detect the pooler: the client cannot see it (whether two statements land
// on one server session or on two is up to the pooler's load), so a check
// would pass or fail at random; see docs/pgbouncer.md.
func (u *Unit) Conn(ctx context.Context, db *sqlx.DB) (*sqlx.Conn, error) {
	if u == nil {
		return nil, ErrNoUnit
	}
	if u.err != nil {
		return nil, u.err
	}
	if u.m.sourceOf(db) == nil {
		return nil, fmt.Errorf("%w: Conn on a database the manager was not given", ErrUnknownSource)
	}
	t := u.t
	t.mu.Lock()
	err := u.activeLocked()
	first := err == nil && !t.started && t.m.observer != nil
	if first {
		t.started = true
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if first {
		t.startUnit()
	}
	c, err := db.Connx(ctx)
	if err != nil {
		return nil, err
	}
	_ = c.Raw(func(dc any) error {
		if g, ok := dc.(*guardConn); ok {
			g.pinned = true // its statements run outside a transaction on purpose
		}
		return nil
	})
	t.mu.Lock()
	if err := u.activeLocked(); err != nil {
		t.mu.Unlock()
		releasePinned([]*sqlx.Conn{c})
		return nil, err
	}
	t.pinned = append(t.pinned, c)
	t.watchLocked()
	t.mu.Unlock()
	return c, nil
}

// releasePinned closes pinned connections and keeps them out of the pool.
func releasePinned(conns []*sqlx.Conn) {
	for _, c := range conns {
		// Returning ErrBadConn from Raw discards the connection instead of
		// pooling it, so advisory locks and SET never outlive the unit.
		_ = c.Raw(func(any) error { return driver.ErrBadConn })
		_ = c.Close()
	}
}
