package uow

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/uowkit/uowkit/internal/bridge"
)

// This file holds observation: what an Observer is told, when, and on
// which context, so that a tracer can wrap a unit, and each BEGIN, COMMIT,
// ROLLBACK, savepoint statement and retry backoff, in spans of its own, with
// the driver's statements nested under the unit's span.

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventBegin reports a source's BEGIN (with the wait for a pool
	// connection).
	EventBegin EventKind = iota + 1
	// EventCommit reports a source's COMMIT.
	EventCommit
	// EventRollback reports a source's ROLLBACK.
	EventRollback
	// EventHookError reports a failed or panicking hook; Err is a *HookError.
	// It is a fact, not an operation: it only reaches Observer.End.
	EventHookError
	// EventRetry reports the backoff before Do, or an HTTP middleware in
	// buffered mode, re-runs a failed attempt; Attempt is the attempt that
	// failed, Err its error, and Delay the backoff. Start is called before
	// the backoff and End when it is over.
	EventRetry
	// EventUnit reports a root unit's life from its first use (its first
	// BEGIN, or a pinned connection) to its end: a unit that touches no
	// database is not reported. Start carries Isolation and ReadOnly; End
	// also carries Sources, Scopes, Outcome and, for a failure, Err. The
	// context Start returns is the one every statement of the unit sees
	// through the unit's context: a tracer's span started there is the
	// parent of the driver's spans.
	EventUnit
	// EventSavepoint reports a savepoint statement of a nested unit
	// (Statement says which: SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO
	// SAVEPOINT) on a source.
	EventSavepoint
	// EventRelay reports one round of an outbox relay (package outbox):
	// Source is the relay's table, Count the messages it delivered, Failed
	// the deliveries that failed, Lag the age of the oldest message still
	// undelivered when the round ended (0 when none is left), and Err the
	// round's failure. It is reported to the Observer a relay is given, not
	// to a manager's.
	EventRelay
	// EventInbox reports a message an outbox inbox handled (package
	// outbox): Source is the inbox's table, Count 1 when the message was
	// applied and 0 when it was a duplicate, skipped, and Err the
	// handler's or the commit's failure.
	EventInbox
	// EventReplicaFallback reports that a read-only unit runs on the
	// primary of a source that has replicas (WithReplicas): Source names
	// the source and Err says why (ErrNoReplica, ErrReplicaBehind), or that
	// a committed unit's read-your-writes position could not be read. It is
	// a fact: it only reaches Observer.End.
	EventReplicaFallback
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventBegin:
		return "begin"
	case EventCommit:
		return "commit"
	case EventRollback:
		return "rollback"
	case EventHookError:
		return "hook-error"
	case EventRetry:
		return "retry"
	case EventUnit:
		return "unit"
	case EventSavepoint:
		return "savepoint"
	case EventRelay:
		return "relay"
	case EventInbox:
		return "inbox"
	case EventReplicaFallback:
		return "replica-fallback"
	}
	return "unknown"
}

// Outcome is what became of a unit, as EventUnit's End reports it.
type Outcome uint8

const (
	// OutcomeCommitted: every source committed.
	OutcomeCommitted Outcome = iota + 1
	// OutcomeRolledBack: every source rolled back (Rollback, an error, a
	// failed COMMIT that left nothing committed, an ended context).
	OutcomeRolledBack
	// OutcomeRollbackOnly: Commit rolled back because the unit was marked
	// rollback-only (a failed statement, a joined unit's failure,
	// SetRollbackOnly).
	OutcomeRollbackOnly
	// OutcomePartial: some sources committed, then one failed.
	OutcomePartial
	// OutcomeUnknown: a COMMIT's outcome is unknown.
	OutcomeUnknown
	// OutcomePending: a two-phase commit's decision to commit is durable,
	// but some sources are still prepared (ErrCommitPending) until
	// Manager.Recover commits them.
	OutcomePending
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case OutcomeCommitted:
		return "committed"
	case OutcomeRolledBack:
		return "rolled back"
	case OutcomeRollbackOnly:
		return "rollback-only"
	case OutcomePartial:
		return "partial"
	case OutcomeUnknown:
		return "unknown"
	case OutcomePending:
		return "pending"
	}
	return "none"
}

// Event is one observation of a unit's life.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// Source names the source (begin, commit, rollback, savepoint).
	Source string
	// Replica names the replica a BEGIN ran on ("" for the primary):
	// "<source>.replica<n>", n counting from 1 in WithReplicas' order.
	Replica string
	// Duration is the time the operation took (End only).
	Duration time.Duration
	// Err is the failure, if any (End only, and EventRetry's Start: the
	// failed attempt's error). For EventUnit it is why the unit did not
	// commit: the error Do's callback returned, the commit's error, or the
	// context's; nil for a Rollback called directly.
	Err error
	// Attempt is the failed attempt's number (EventRetry), or the number of
	// the attempt a unit is (EventUnit, from 1; 0 outside a retrying Do).
	Attempt int
	// Delay is the backoff before the next attempt (EventRetry).
	Delay time.Duration
	// Isolation and ReadOnly are the root unit's options (EventUnit).
	Isolation sql.IsolationLevel
	ReadOnly  bool
	// Sources are the sources the unit used, in order of first use
	// (EventUnit's End).
	Sources []string
	// Scopes are the propagations of the scopes begun inside the unit
	// (Join, Nested...), in order (EventUnit's End).
	Scopes []Propagation
	// Outcome is what became of the unit (EventUnit's End).
	Outcome Outcome
	// Statement is the savepoint statement (EventSavepoint).
	Statement string
	// Count and Failed are how many messages a relay round delivered and
	// failed to deliver (EventRelay), or whether an inbox applied a message
	// (EventInbox: 1, or 0 for a duplicate).
	Count, Failed int
	// Lag is the age of the oldest undelivered message after a relay round
	// (EventRelay).
	Lag time.Duration
}

// Observer is told about a unit's life as it happens. Start is called
// before an operation (a unit's first use, a BEGIN, a COMMIT, a ROLLBACK, a
// savepoint statement, a retry's backoff) and returns the context the
// operation runs on: a tracer starts a span there and returns the context
// carrying it. End is called once the operation is over, with the context
// Start returned and the event completed (Duration, Err, Outcome...). Facts
// that are not operations (EventHookError) only reach End.
//
// Both are called synchronously by the goroutine doing the work (or the one
// rolling back a unit whose context ended), never under the unit's internal
// lock: they may look at the unit, but they delay their caller, so they must
// be quick.
type Observer interface {
	Start(ctx context.Context, e Event) context.Context
	End(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to an Observer that is told of each event
// when it is over (End); its Start returns the context unchanged.
type ObserverFunc func(ctx context.Context, e Event)

// Start returns ctx.
func (f ObserverFunc) Start(ctx context.Context, _ Event) context.Context { return ctx }

// End calls f.
func (f ObserverFunc) End(ctx context.Context, e Event) { f(ctx, e) }

// Observers returns an Observer that reports to each of obs in turn: Start
// threads the context through them in order, End tells them in reverse
// order, with the context the last Start returned. Put a tracer first, so
// that the others (a logger) see its span in the context; put at most one
// span-making observer in the list, since End gets one context for all.
// Nil observers are skipped.
func Observers(obs ...Observer) Observer {
	var list observerList
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	return list
}

type observerList []Observer

func (l observerList) Start(ctx context.Context, e Event) context.Context {
	for _, o := range l {
		ctx = o.Start(ctx, e)
	}
	return ctx
}

func (l observerList) End(ctx context.Context, e Event) {
	for i := len(l) - 1; i >= 0; i-- {
		l[i].End(ctx, e)
	}
}

// start tells the Observer that e starts and returns the context it runs
// on, with the time it started.
func (m *Manager) start(ctx context.Context, e Event) (context.Context, time.Time) {
	if m.observer == nil {
		return ctx, time.Time{}
	}
	return m.observer.Start(ctx, e), time.Now()
}

// end tells the Observer that e, started at start, is over.
func (m *Manager) end(ctx context.Context, e Event, start time.Time) {
	if m.observer != nil {
		if !start.IsZero() {
			e.Duration = time.Since(start)
		}
		m.observer.End(ctx, e)
	}
}

// observe reports a fact (End only).
func (m *Manager) observe(ctx context.Context, e Event) {
	if m.observer != nil {
		m.observer.End(ctx, e)
	}
}

// observed holds the context an Observer's Start returned for a root unit:
// the unit's context answers values from it (a tracer's span), so that
// statements run on the unit's context see them.
type observed struct {
	p atomic.Pointer[context.Context]
}

func (o *observed) load() context.Context {
	if p := o.p.Load(); p != nil {
		return *p
	}
	return nil
}

// NewSlogObserver returns an Observer that logs to l when each operation is
// over: begins, commits, rollbacks and savepoints at Debug, units at Debug
// (Info when they did not commit), retries at Warn, a unit rolled back
// because its caller went away at Info and because a deadline passed at
// Warn, and every other failure (always a partial or unknown commit) at
// Error. Under the HTTP middleware each line carries the request's method,
// route and request id.
func NewSlogObserver(l *slog.Logger) Observer {
	return ObserverFunc(func(ctx context.Context, e Event) {
		level := slog.LevelDebug
		switch {
		case e.Kind == EventRetry || e.Kind == EventReplicaFallback:
			level = slog.LevelWarn
		case e.Kind == EventUnit && e.Outcome != OutcomeCommitted && e.Err == nil:
			level = slog.LevelInfo
		case errors.Is(e.Err, context.Canceled) && e.Outcome != OutcomePartial && e.Outcome != OutcomeUnknown:
			level = slog.LevelInfo // the caller went away: rolled back, as it should
		case errors.Is(e.Err, context.DeadlineExceeded) && e.Outcome != OutcomePartial && e.Outcome != OutcomeUnknown:
			level = slog.LevelWarn
		case e.Err != nil:
			level = slog.LevelError
		}
		if !l.Enabled(ctx, level) {
			return
		}
		attrs := []slog.Attr{slog.String("event", e.Kind.String())}
		if e.Source != "" {
			attrs = append(attrs, slog.String("source", e.Source))
		}
		if e.Replica != "" {
			attrs = append(attrs, slog.String("replica", e.Replica))
		}
		if e.Statement != "" {
			attrs = append(attrs, slog.String("statement", e.Statement))
		}
		if e.Duration > 0 {
			attrs = append(attrs, slog.Duration("duration", e.Duration))
		}
		switch e.Kind {
		case EventRetry:
			attrs = append(attrs, slog.Int("attempt", e.Attempt), slog.Duration("delay", e.Delay))
		case EventUnit:
			attrs = append(attrs, slog.String("outcome", e.Outcome.String()), slog.Any("sources", e.Sources))
		case EventRelay:
			attrs = append(attrs, slog.Int("delivered", e.Count), slog.Int("failed", e.Failed), slog.Duration("lag", e.Lag))
		case EventInbox:
			attrs = append(attrs, slog.Bool("applied", e.Count > 0))
		}
		if e.Err != nil {
			attrs = append(attrs, slog.Any("error", e.Err))
		}
		if r := bridge.RequestFrom(ctx); r != nil {
			attrs = append(attrs, slog.Group("request",
				slog.String("method", r.Method), slog.String("route", r.Route()), slog.String("id", r.ID)))
		}
		l.LogAttrs(ctx, level, "uow "+e.Kind.String(), attrs...)
	})
}
