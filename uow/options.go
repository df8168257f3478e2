package uow

import (
	"database/sql"
	"time"
)

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

// config is the resolved set of options of one unit.
type config struct {
	isolation   sql.IsolationLevel
	readOnly    bool
	timeout     time.Duration
	propagation Propagation
	retry       retrySetting
}

// Option configures one unit (Begin) or one call (Do).
type Option func(*config)

// Isolation sets the isolation level of the unit's transactions. When the
// unit joins or nests in an active unit, the active unit's level must be at
// least as strict, else the unit fails with ErrIncompatible.
func Isolation(level sql.IsolationLevel) Option {
	return func(c *config) { c.isolation = level }
}

// ReadOnly begins the unit's transactions read-only; writes then fail in the
// database (PostgreSQL SQLSTATE 25006). Joining a read-write unit with
// ReadOnly fails with ErrIncompatible: the requirement could not be honoured.
func ReadOnly() Option {
	return func(c *config) { c.readOnly = true }
}

// Timeout bounds everything the unit does: the context Begin returns carries
// the deadline, and when it passes the unit's transactions are rolled back
// and their connections released, whether or not a statement is running.
// Commit after the deadline returns an error wrapping
// context.DeadlineExceeded. Zero means no timeout of its own.
//
// The deadline belongs to the unit: when the unit finishes (Commit,
// Rollback, or the end of Do), the context Begin returned is cancelled and
// its timer released. Work that goes on after the unit, such as streaming a
// response, must use the caller's context, not the unit's.
func Timeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// Propagate sets what happens when a unit is already active in the context.
func Propagate(p Propagation) Option {
	return func(c *config) { c.propagation = p }
}

func (m *Manager) config(opts []Option) config {
	c := m.defaults
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
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

// compatible reports whether a unit begun with outer satisfies inner.
func compatible(outer, inner config) bool {
	if inner.readOnly && !outer.readOnly {
		return false
	}
	if inner.isolation != sql.LevelDefault && effectiveIsolation(inner.isolation) > effectiveIsolation(outer.isolation) {
		return false
	}
	return true
}
