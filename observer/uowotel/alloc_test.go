package uowotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/uowkit/uowkit/observer/uowotel"
	"github.com/uowkit/uowkit/uow"
)

// TestRecordAllocations pins that recording the metrics of the events of
// a unit (with the SDK's meter, spans off) allocates nothing once the
// attribute sets of a source are cached: a plain COMMIT, the steps of a
// two-phase commit, a unit of each outcome, a replica fallback for a
// replica sentinel, and an outbox relay round or inbox message that did not
// fail. Not parallel: AllocsPerRun counts every allocation of the process.
func TestRecordAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	obs := uowotel.New(uowotel.WithTracerProvider(tracenoop.NewTracerProvider()), uowotel.WithMeterProvider(mp))
	ctx := context.Background()
	for _, e := range []uow.Event{
		{Kind: uow.EventBegin, Source: "default", Replica: "default.replica1"},
		{Kind: uow.EventCommit, Source: "default"},
		{Kind: uow.EventCommit, Source: "default", Statement: "PREPARE TRANSACTION"},
		{Kind: uow.EventCommit, Source: "default", Statement: "decision"},
		{Kind: uow.EventCommit, Source: "default", Statement: "COMMIT PREPARED"},
		{Kind: uow.EventRollback, Source: "default", Statement: "ROLLBACK PREPARED"},
		{Kind: uow.EventUnit, Outcome: uow.OutcomeCommitted},
		{Kind: uow.EventUnit, Outcome: uow.OutcomeRolledBack},
		{Kind: uow.EventUnit, Outcome: uow.OutcomePending},
		{Kind: uow.EventReplicaFallback, Source: "default", Err: uow.ErrNoReplica},
		{Kind: uow.EventReplicaFallback, Source: "default", Err: uow.ErrReplicaBehind},
		{Kind: uow.EventRelay, Source: "outbox", Count: 3, Failed: 1, Lag: time.Second},
		{Kind: uow.EventInbox, Source: "inbox", Count: 1},
		{Kind: uow.EventInbox, Source: "inbox"},
	} {
		e.Duration = time.Millisecond
		obs.End(ctx, e) // caches the attribute sets
		n := testing.AllocsPerRun(100, func() {
			c := obs.Start(ctx, e)
			obs.End(c, e)
		})
		assert.Zero(t, n, "%v %s %s", e.Kind, e.Statement, e.Outcome)
	}
}
