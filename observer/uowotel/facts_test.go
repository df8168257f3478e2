package uowotel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/uowkit/uowkit/uow"
)

// sqlStateError is a driver error carrying a SQLSTATE, as lib/pq's and
// pgx's do.
type sqlStateError string

func (e sqlStateError) Error() string    { return "sqlstate " + string(e) }
func (e sqlStateError) SQLState() string { return string(e) }

// report tells the observer of e as the core and package outbox do: Start,
// which must start no span and return ctx as it is, then End.
func report(t *testing.T, o *otelEnv, ctx context.Context, e uow.Event) {
	t.Helper()
	before := len(o.spans.Started())
	got := o.obs.Start(ctx, e)
	assert.True(t, got == ctx, "%v: Start returns its context as it is", e.Kind)
	o.obs.End(ctx, e)
	assert.Len(t, o.spans.Started(), before, "%v makes no span", e.Kind)
}

// fact tells the observer of e as the core tells a fact: End only.
func fact(t *testing.T, o *otelEnv, ctx context.Context, e uow.Event) {
	t.Helper()
	before := len(o.spans.Started())
	o.obs.End(ctx, e)
	assert.Len(t, o.spans.Started(), before, "%v makes no span", e.Kind)
}

// spanEvents returns a span's events but exceptions, as "name{k=v,...}".
func spanEvents(s sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, e := range s.Events() {
		if e.Name != "exception" {
			out = append(out, key(e.Name, attribute.NewSet(e.Attributes...)))
		}
	}
	return out
}

// A replica fallback is counted by source and reason, and marks the unit's
// span (the span in its context) with an event; it makes no span, and ends
// none. Its reason is the replica sentinel even when the failure under it
// carries a context error or a SQLSTATE; a fallback for another reason (the
// WAL position after a COMMIT could not be read) gets errorType's value.
func TestReplicaFallbackFact(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	ctx, unit := o.parent("unit")
	fact(t, o, ctx, uow.Event{Kind: uow.EventReplicaFallback, Source: "default", Err: uow.ErrNoReplica})
	fact(t, o, ctx, uow.Event{Kind: uow.EventReplicaFallback, Source: "default",
		Err: fmt.Errorf("%w: %w", uow.ErrNoReplica, sqlStateError("57P03"))})
	fact(t, o, ctx, uow.Event{Kind: uow.EventReplicaFallback, Source: "billing",
		Err: fmt.Errorf("%w: %w", uow.ErrReplicaBehind, context.Canceled)})
	fact(t, o, ctx, uow.Event{Kind: uow.EventReplicaFallback, Source: "billing",
		Err: fmt.Errorf("uow: reading the WAL position after COMMIT: %w", sqlStateError("08006"))})
	// Outside a recording span: counted, nothing else.
	fact(t, o, context.Background(), uow.Event{Kind: uow.EventReplicaFallback, Source: "default", Err: uow.ErrNoReplica})
	assert.Empty(t, o.spans.Ended(), "the unit's span is still open")
	unit.End()

	s := o.one(t, "unit")
	assert.Equal(t, []string{
		"uow.replica_fallback{error.type=uow.ErrNoReplica,uow.source=default}",
		"uow.replica_fallback{error.type=uow.ErrNoReplica,uow.source=default}",
		"uow.replica_fallback{error.type=uow.ErrReplicaBehind,uow.source=billing}",
		"uow.replica_fallback{error.type=08006,uow.source=billing}",
	}, spanEvents(s))
	assert.Equal(t, codes.Unset, s.Status().Code, "a fallback is no failure of the unit")
	assert.Equal(t, map[string]int64{
		"uow.replica.fallbacks{error.type=uow.ErrNoReplica,uow.source=default}":     3,
		"uow.replica.fallbacks{error.type=uow.ErrReplicaBehind,uow.source=billing}": 1,
		"uow.replica.fallbacks{error.type=08006,uow.source=billing}":                1,
	}, o.points(t))
}

// A relay round counts its deliveries and failures, and sets the lag gauge
// when it measured the lag: every successful round (0 once nothing is
// left), a failed one only when the lag is positive.
func TestRelayFact(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	ctx, caller := o.parent("caller")
	relay := func(count, failed int, lag time.Duration, err error) {
		report(t, o, ctx, uow.Event{Kind: uow.EventRelay, Source: "outbox", Count: count, Failed: failed, Lag: lag, Err: err})
	}

	relay(3, 1, 2500*time.Millisecond, nil)
	relay(2, 0, 0, errors.New("reading the lag: connection refused"))
	assert.Equal(t, map[string]int64{
		"uow.outbox.delivered{uow.source=outbox}": 5,
		"uow.outbox.failed{uow.source=outbox}":    1,
		"uow.outbox.lag{uow.source=outbox}":       2500,
	}, o.points(t), "a failed round that measured no lag leaves the gauge alone")

	relay(4, 0, 0, nil)
	assert.Equal(t, int64(0), o.points(t)["uow.outbox.lag{uow.source=outbox}"], "nothing left undelivered")

	relay(0, 2, 1250*time.Millisecond, errors.New("publish: 2 failed"))
	report(t, o, ctx, uow.Event{Kind: uow.EventRelay, Source: "outbox_b", Count: 1, Lag: 40 * time.Millisecond})
	assert.Equal(t, map[string]int64{
		"uow.outbox.delivered{uow.source=outbox}":   9,
		"uow.outbox.failed{uow.source=outbox}":      3,
		"uow.outbox.lag{uow.source=outbox}":         1250,
		"uow.outbox.delivered{uow.source=outbox_b}": 1,
		"uow.outbox.failed{uow.source=outbox_b}":    0,
		"uow.outbox.lag{uow.source=outbox_b}":       40,
	}, o.points(t))

	caller.End()
	assert.Len(t, o.spans.Ended(), 1, "only the caller's span")
	assert.Empty(t, spanEvents(o.one(t, "caller")))
}

// An inbox message is counted by table and whether it was applied, with
// error.type for a failure.
func TestInboxFact(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	ctx, caller := o.parent("caller")
	inbox := func(count int, err error) {
		report(t, o, ctx, uow.Event{Kind: uow.EventInbox, Source: "inbox", Count: count, Err: err})
	}
	inbox(1, nil)
	inbox(0, nil)
	inbox(0, nil)
	inbox(0, context.Canceled)
	inbox(0, fmt.Errorf("handler: %w", sqlStateError("23505")))
	caller.End()

	assert.Equal(t, map[string]int64{
		"uow.inbox.messages{uow.applied=true,uow.source=inbox}":                              1,
		"uow.inbox.messages{uow.applied=false,uow.source=inbox}":                             2,
		"uow.inbox.messages{error.type=context.Canceled,uow.applied=false,uow.source=inbox}": 1,
		"uow.inbox.messages{error.type=23505,uow.applied=false,uow.source=inbox}":            1,
	}, o.points(t))
	assert.Len(t, o.spans.Ended(), 1, "only the caller's span")
}

// A two-phase commit decided but pending on a source: its own outcome and
// counter, and error.type names the sentinel.
func TestPendingCommit(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	ctx, req := o.parent("request")
	uctx := o.obs.Start(ctx, uow.Event{Kind: uow.EventUnit})
	err := &uow.CommitError{Committed: []string{"default"}, Failed: "audit", Pending: []string{"audit"},
		Err: errors.New("connection reset")}
	require.ErrorIs(t, err, uow.ErrCommitPending)
	o.obs.End(uctx, uow.Event{Kind: uow.EventUnit, Sources: []string{"default", "audit"},
		Outcome: uow.OutcomePending, Err: err, Duration: time.Millisecond})
	req.End()

	unit := o.one(t, "uow.unit")
	a := attrsOf(unit)
	assert.Equal(t, "pending", a["uow.outcome"])
	assert.Equal(t, "uow.ErrCommitPending", a["error.type"])
	assert.Equal(t, codes.Error, unit.Status().Code)
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=pending}": 1,
		"uow.commits.pending":                    1,
	}, o.points(t))
}
