// Package seam is the boundary between a unit of work and a kind of
// database. Package uow implements it for database/sql (through sqlx);
// adapter modules implement it for other drivers (uowpgx, for pgx's own
// pool) and plug in through AddSource and Run, which package uow sets in
// its init. Nothing in the scope tree or the commit protocol changes for a
// new kind of source.
package seam

import (
	"context"
	"database/sql"
	"time"
)

// TxOptions are what a BEGIN carries.
type TxOptions struct {
	Isolation sql.IsolationLevel
	ReadOnly  bool
}

// Backend is what a unit needs from one kind of database.
type Backend interface {
	// Begin starts a transaction. It waits for a pool connection, and runs
	// BEGIN, no longer than ctx allows. ctx also governs the transaction's
	// life: the unit cancels it only to interrupt the transaction (an
	// abort), so the driver may then roll it back on its own.
	Begin(ctx context.Context, o TxOptions) (Tx, error)
	// BeginAttempts bounds the further BEGINs a unit tries, each on
	// another connection, after one failed on a broken connection.
	BeginAttempts() int
	// Fatal reports whether a failed statement leaves the transaction
	// unable to commit its work (PostgreSQL aborts it on any error).
	Fatal(err error) bool
}

// Tx is one source's transaction.
type Tx interface {
	Commit() error
	// Rollback returns nil when the transaction is already gone: rolled
	// back by the driver, or its connection broken (the server rolls back
	// with the session).
	Rollback() error
	// Exec runs a control statement: SAVEPOINT, RELEASE, ROLLBACK TO.
	Exec(ctx context.Context, stmt string) error
}

// XactTx is implemented by a Tx whose database can name its transaction
// (PostgreSQL): a unit whose manager resolves unknown commit outcomes
// (uow.ResolveOutcomes) asks for the id just before COMMIT.
type XactTx interface {
	// XactID runs SELECT pg_current_xact_id_if_assigned() in the
	// transaction. ok is false (with a nil error) when no id was assigned:
	// the transaction never wrote, so its COMMIT cannot lose anything.
	XactID(ctx context.Context) (id string, ok bool, err error)
}

// XactBackend is implemented by a Backend that can tell a transaction's
// fate from outside it (PostgreSQL), after the connection that sent its
// COMMIT broke.
type XactBackend interface {
	// XactStatus runs SELECT pg_xact_status($1::xid8) on a pooled
	// connection outside any unit and returns the answer: "committed",
	// "aborted" or "in progress" (and "" for an id too old to be known).
	XactStatus(ctx context.Context, id string) (string, error)
}

// PrepareTx is implemented by a Tx that can take part in a two-phase
// commit (PostgreSQL): see uow.TwoPhase.
type PrepareTx interface {
	// Prepare runs PREPARE TRANSACTION gid and releases the transaction's
	// connection: the prepared transaction no longer belongs to a session,
	// and is finished by FinishPrepared on any connection. gid is made by
	// package uow from a checked prefix, hex digits and dots, so it is safe
	// to quote as a literal. An error means the transaction was not
	// prepared: it is rolled back (PostgreSQL rolls back a transaction whose
	// PREPARE fails), or its connection is gone.
	Prepare(ctx context.Context, gid string) error
}

// OutsideBackend is implemented by a Backend that runs statements outside
// any unit, on a pooled connection (PostgreSQL): what a two-phase commit
// needs after PREPARE (COMMIT PREPARED, ROLLBACK PREPARED, the decision
// log) and what its recovery asks. ctx carries no unit (so Guard lets the
// statements through).
type OutsideBackend interface {
	// ExecOutside runs query with args and returns the rows it affected.
	ExecOutside(ctx context.Context, query string, args ...any) (int64, error)
	// QueryOutside runs query with args and returns its rows, every column
	// as text (queries cast their columns to text; NULL is "").
	QueryOutside(ctx context.Context, query string, args ...any) ([][]string, error)
}

// Cursor is a result a statement leaves open on its transaction's
// connection (rows, a batch), which keeps the connection busy.
type Cursor interface {
	// Open reports whether the cursor still holds the connection.
	Open() bool
	// Close releases the connection; safe to call from another goroutine
	// than the one reading the cursor, and more than once.
	Close()
}

// AddSource returns a uow.ManagerOption (as any) that adds a source named
// name, identified by key (the pool a repository passes to find its
// transaction), served by b. Package uow sets it.
var AddSource func(name string, key any, b Backend) any

// Run runs f on the transaction of unit (a *uow.Unit) on the source
// identified by key, as uow's own handles run their statements: the
// source's transaction is begun on first use (and the savepoints of
// enclosing nested units created), statements are serialised on it and
// refused while a cursor is open (uow.ErrBusy), a failure that f returns
// marks the unit rollback-only when the backend says it is fatal, and a
// finished unit refuses everything (uow.ErrDone). A cursor f returns is
// tracked until it closes; cursor says f may return one, whose reading
// outlives the call (its context is then left to end with the unit's). A
// key the unit's manager was not given fails with uow.ErrUnknownSource, and
// a nil unit with uow.ErrNoUnit.
var Run func(unit any, key any, ctx context.Context, cursor bool, f func(ctx context.Context, tx Tx) (Cursor, error)) error

// Fail marks unit (a *uow.Unit) rollback-only after err, reported late by a
// cursor of the source identified by key (a query's error surfaces when its
// rows are read), when that source's backend says it is fatal.
var Fail func(unit any, key any, err error)

// AddReplicas returns a uow.ManagerOption (as any) that gives the source
// identified by key the replicas served by backends (each also an
// OutsideBackend), with uow.Replicas' MaxWait and Cooldown. Package uow sets
// it.
var AddReplicas func(key any, backends []Backend, maxWait, cooldown time.Duration) any

// Active reports whether unit (a *uow.Unit, possibly nil) is active: begun
// without a configuration error and not finished. Package uow sets it.
var Active func(unit any) bool
