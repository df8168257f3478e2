package uow

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventBegin reports a source's transaction being begun.
	EventBegin EventKind = iota + 1
	// EventCommit reports a source's COMMIT.
	EventCommit
	// EventRollback reports a source's ROLLBACK.
	EventRollback
	// EventHookError reports a failed or panicking hook; Err is a *HookError.
	EventHookError
	// EventRetry reports that Do, or an HTTP middleware in buffered mode, is
	// about to re-run a failed attempt; Attempt is the attempt that failed
	// and Delay the backoff before the next one.
	EventRetry
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
	}
	return "unknown"
}

// Event is one observation of a unit's life.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// Source names the source (empty for hooks and retries).
	Source string
	// Duration is the time the round trip took (begin, commit, rollback).
	Duration time.Duration
	// Err is the failure, if any.
	Err error
	// Attempt is the failed attempt's number (EventRetry).
	Attempt int
	// Delay is the backoff before the next attempt (EventRetry).
	Delay time.Duration
}

// Observer receives events. Observe is called synchronously, by the
// goroutine that caused the event (or the one rolling back a unit whose
// context ended), never under the unit's internal lock: it may look at the
// unit, but it delays its caller, so it must be quick. The context is
// the one the root unit was begun with.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f.
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// now returns the time a round trip starts, or the zero time when there is
// no Observer to tell its duration to: reading the clock is not free.
func (m *Manager) now() time.Time {
	if m.observer == nil {
		return time.Time{}
	}
	return time.Now()
}

// observeRoundTrip reports a BEGIN, COMMIT or ROLLBACK that started at start.
func (m *Manager) observeRoundTrip(ctx context.Context, kind EventKind, source string, start time.Time, err error) {
	if m.observer != nil {
		m.observer.Observe(ctx, Event{Kind: kind, Source: source, Duration: time.Since(start), Err: err})
	}
}

func (m *Manager) observe(ctx context.Context, e Event) {
	if m.observer != nil {
		m.observer.Observe(ctx, e)
	}
}

// NewSlogObserver returns an Observer that logs to l: begins, commits and
// rollbacks at Debug, retries at Warn, and every failure at Error.
func NewSlogObserver(l *slog.Logger) Observer {
	return ObserverFunc(func(ctx context.Context, e Event) {
		level := slog.LevelDebug
		switch {
		case e.Kind == EventRetry:
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
		if e.Duration > 0 {
			attrs = append(attrs, slog.Duration("duration", e.Duration))
		}
		if e.Kind == EventRetry {
			attrs = append(attrs, slog.Int("attempt", e.Attempt), slog.Duration("delay", e.Delay))
		}
		if e.Err != nil {
			attrs = append(attrs, slog.Any("error", e.Err))
		}
		l.LogAttrs(ctx, level, "uow "+e.Kind.String(), attrs...)
	})
}
