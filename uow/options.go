package uow

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uowkit/uowkit/retry"
)

// ErrInvalidOptions is reported by Begin and Do (through the unit, as for
// every configuration error) when one call's options contradict each other:
// two different isolation levels, two propagations, two timeouts, or Retry
// together with NoRetry. An option given to Begin or Do overrides the
// manager's default of the same kind (WithDefaults); that is not a
// contradiction.
var ErrInvalidOptions = errors.New("uow: contradictory options")

// Propagation says what Begin and Do do when a unit is already active in the
// context.
type Propagation int

const (
	// Join makes the new unit a participant of the active unit (the default).
	// Its Commit is a no-op that the outer unit completes; its failure marks
	// the outer unit rollback-only. Without an active unit, a new one starts.
	Join Propagation = iota
	// Nested runs the work in a savepoint of the active unit: its rollback
	// undoes only its own work, and the outer unit goes on. The savepoint is
	// lazy too: it is only created on sources the nested unit uses. Without an
	// active unit, a new one starts.
	Nested
	// RequiresNew starts an independent unit on connections of its own; the
	// active unit, if any, is unaffected by its outcome.
	RequiresNew
	// Mandatory joins the active unit and fails with ErrNoUnit when there is
	// none.
	Mandatory
)

// String returns the propagation's name.
func (p Propagation) String() string {
	switch p {
	case Join:
		return "join"
	case Nested:
		return "nested"
	case RequiresNew:
		return "requires-new"
	case Mandatory:
		return "mandatory"
	}
	return "unknown"
}

// Bits of config.set: which options one call gave.
const (
	setIsolation uint8 = 1 << iota
	setReadOnly
	setTimeout
	setPropagation
	setRetry
	setAtomic
	setStatementTimeout
	setLockTimeout
)

// config is the resolved set of options of one unit.
type config struct {
	isolation   sql.IsolationLevel
	readOnly    bool
	timeout     time.Duration
	propagation Propagation
	retry       retrySetting
	atomic      bool // two-phase commit across sources (Atomic)
	stmtTimeout time.Duration
	lockTimeout time.Duration
	set         uint8 // options given by the call being resolved
	err         error // the first contradiction found
	attempt     int   // the attempt of a retrying Do a root unit is, from 1
}

// mark records that the option of bit was given with a value equal (same)
// or not to the one already given in this call.
func (c *config) mark(bit uint8, name string, same bool) {
	if c.set&bit != 0 && !same && c.err == nil {
		c.err = fmt.Errorf("%w: %s given twice with different values", ErrInvalidOptions, name)
	}
	c.set |= bit
}

// Option configures one unit (Begin) or one call (Do). Options are values,
// made by Isolation, ReadOnly, Timeout, StatementTimeout, LockTimeout,
// Atomic, Propagate, Retry and NoRetry; the
// zero Option does nothing.
type Option struct {
	bit       uint8 // which option; 0 for none
	isolation sql.IsolationLevel
	timeout   time.Duration
	prop      Propagation
	policy    *retry.Policy // Retry; nil with bit setRetry is NoRetry
}

// apply adds o to c.
func (c *config) apply(o Option) {
	switch o.bit {
	case setIsolation:
		c.mark(setIsolation, "Isolation", c.isolation == o.isolation)
		c.isolation = o.isolation
	case setReadOnly:
		c.mark(setReadOnly, "ReadOnly", true)
		c.readOnly = true
	case setTimeout:
		c.mark(setTimeout, "Timeout", c.timeout == o.timeout)
		c.timeout = o.timeout
	case setPropagation:
		c.mark(setPropagation, "Propagate", c.propagation == o.prop)
		c.propagation = o.prop
	case setRetry:
		// Retry given twice is contradictory (policies cannot be compared);
		// NoRetry twice is not.
		c.mark(setRetry, "Retry/NoRetry", o.policy == nil && c.set&setRetry != 0 && c.retry.policy == nil)
		c.retry = retrySetting{set: true, policy: o.policy}
	case setAtomic:
		c.mark(setAtomic, "Atomic", true)
		c.atomic = true
	case setStatementTimeout:
		c.mark(setStatementTimeout, "StatementTimeout", c.stmtTimeout == o.timeout)
		c.stmtTimeout = o.timeout
	case setLockTimeout:
		c.mark(setLockTimeout, "LockTimeout", c.lockTimeout == o.timeout)
		c.lockTimeout = o.timeout
	}
}

// Isolation sets the isolation level of the unit's transactions. When the
// unit joins or nests in an active unit, the active unit's level must be at
// least as strict, else the unit fails with ErrIncompatible.
func Isolation(level sql.IsolationLevel) Option {
	return Option{bit: setIsolation, isolation: level}
}

// ReadOnly begins the unit's transactions read-only; writes then fail in the
// database (PostgreSQL SQLSTATE 25006). Joining a read-write unit with
// ReadOnly fails with ErrIncompatible: the requirement could not be honoured.
func ReadOnly() Option { return Option{bit: setReadOnly} }

// Timeout bounds everything the unit does: the context Begin returns carries
// the deadline; waiting for a pool connection, BEGIN and every statement
// honour it; and when it passes the unit's transactions are rolled back and
// their connections released, whether or not a statement is running.
// Commit after the deadline returns an error wrapping
// context.DeadlineExceeded. Zero means no timeout of its own; a negative
// duration panics: it is a programming error, found where the option is
// made.
//
// The deadline belongs to the unit: when the unit finishes (Commit,
// Rollback, or the end of Do), the context Begin returned is cancelled and
// its timer released. Work that goes on after the unit, such as streaming a
// response, must use the caller's context, not the unit's.
func Timeout(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("uow: negative Timeout %v", d))
	}
	return Option{bit: setTimeout, timeout: d}
}

// Atomic makes the unit commit its sources atomically, with a two-phase
// commit (PREPARE TRANSACTION on every source, a durable decision, then
// COMMIT PREPARED), when it has used more than one: either every source
// commits or none does, even if the process dies in between (recovery
// finishes the work; see TwoPhase and Manager.Recover). A unit that used one
// source commits it plainly. The manager must be made with TwoPhase, else
// the unit fails with ErrInvalidOptions. Joining or nesting in an active
// unit that is not atomic fails with ErrIncompatible.
func Atomic() Option { return Option{bit: setAtomic} }

// StatementTimeout sets PostgreSQL's statement_timeout for the unit's
// transactions: a statement that runs longer is cancelled by the server
// (SQLSTATE 57014), which marks the unit rollback-only. It is set right after
// each BEGIN with set_config('statement_timeout', ..., true), scoped to the
// transaction, so it never outlives the unit, even on a server connection
// that PgBouncer (transaction pooling) hands to another client next: never
// a session SET. It costs one more round trip per source, on PostgreSQL
// sources only (another database fails the BEGIN with its error). A unit
// that joins or nests in an active unit whose statement_timeout is not at
// least as short fails with ErrIncompatible. Timeout,
// by contrast, is enforced by the client and also bounds the wait for a
// connection. A duration below one millisecond panics; so does a negative
// one.
func StatementTimeout(d time.Duration) Option {
	if d < time.Millisecond {
		panic(fmt.Sprintf("uow: StatementTimeout(%v): want at least 1ms", d))
	}
	return Option{bit: setStatementTimeout, timeout: d}
}

// LockTimeout sets PostgreSQL's lock_timeout for the unit's transactions: a
// statement that waits longer for a lock fails (SQLSTATE 55P03), which marks
// the unit rollback-only. Like StatementTimeout it is scoped to the
// transaction (set_config(..., true) after BEGIN), costs one round trip per
// source (one in all, with StatementTimeout), and panics below one
// millisecond.
func LockTimeout(d time.Duration) Option {
	if d < time.Millisecond {
		panic(fmt.Sprintf("uow: LockTimeout(%v): want at least 1ms", d))
	}
	return Option{bit: setLockTimeout, timeout: d}
}

// Propagate sets what happens when a unit is already active in the context.
func Propagate(p Propagation) Option { return Option{bit: setPropagation, prop: p} }

// config resolves a call's options over the manager's defaults.
func (m *Manager) config(opts []Option) config {
	c := m.defaults
	for _, o := range opts {
		c.apply(o)
	}
	if c.atomic && m.twoPhase == nil && c.err == nil {
		c.err = fmt.Errorf("%w: Atomic needs a manager made with TwoPhase", ErrInvalidOptions)
	}
	return c
}

// effectiveIsolation orders sql.LevelDefault as read committed, the default of
// PostgreSQL and MySQL's weakest practical level, so that a stricter
// requirement inside a default unit is reported rather than assumed.
func effectiveIsolation(l sql.IsolationLevel) sql.IsolationLevel {
	if l == sql.LevelDefault {
		return sql.LevelReadCommitted
	}
	return l
}

// within reports whether a server-side timeout outer (0: none) satisfies
// the requirement inner (0: none).
func within(outer, inner time.Duration) bool {
	return inner == 0 || (outer != 0 && outer <= inner)
}

// compatible reports whether a unit begun with outer satisfies inner.
func compatible(outer, inner config) bool {
	if inner.readOnly && !outer.readOnly {
		return false
	}
	if inner.atomic && !outer.atomic {
		return false
	}
	if !within(outer.stmtTimeout, inner.stmtTimeout) || !within(outer.lockTimeout, inner.lockTimeout) {
		return false
	}
	if inner.isolation != sql.LevelDefault && effectiveIsolation(inner.isolation) > effectiveIsolation(outer.isolation) {
		return false
	}
	return true
}

func describe(c config) string {
	mode := "read-write"
	if c.readOnly {
		mode = "read-only"
	}
	if c.atomic {
		mode += " atomic"
	}
	if c.stmtTimeout > 0 {
		mode += fmt.Sprintf(" statement_timeout=%v", c.stmtTimeout)
	}
	if c.lockTimeout > 0 {
		mode += fmt.Sprintf(" lock_timeout=%v", c.lockTimeout)
	}
	return fmt.Sprintf("%s %s", effectiveIsolation(c.isolation), mode)
}
