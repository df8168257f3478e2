package outbox_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

// inboxEnv is a consumer: an inbox and a projection (a counter row) it
// updates in the same unit.
type inboxEnv struct {
	*env
	in     *outbox.Inbox
	events []uow.Event
	mu     sync.Mutex
}

func newInboxEnv(t *testing.T) *inboxEnv {
	e := &inboxEnv{env: newEnv(t)}
	in, err := outbox.NewInbox(e.db, outbox.Postgres, outbox.InboxConfig{Table: e.table + "_inbox",
		Observer: uow.ObserverFunc(func(_ context.Context, ev uow.Event) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.events = append(e.events, ev)
		})})
	require.NoError(t, err)
	e.in = in
	return e
}

// apply is the projection: one order row per applied message.
func (e *inboxEnv) apply(ctx context.Context) error {
	_, err := uow.FromContext(ctx).On(e.db).ExecContext(ctx, `INSERT INTO `+e.table+`_orders (item) VALUES ('applied')`)
	return err
}

func (e *inboxEnv) applied(t *testing.T) int {
	var n int
	require.NoError(t, e.db.Get(&n, `SELECT count(*) FROM `+e.table+`_orders`))
	return n
}

// The same message delivered twice is applied once; the second delivery is
// reported as a duplicate, without calling the handler.
func TestInboxAppliesOnce(t *testing.T) {
	e := newInboxEnv(t)
	ctx := context.Background()
	applied, err := e.in.Handle(ctx, e.m, "m1", e.apply)
	require.NoError(t, err)
	assert.True(t, applied)
	called := false
	applied, err = e.in.Handle(ctx, e.m, "m1", func(ctx context.Context) error { called = true; return nil })
	require.NoError(t, err)
	assert.False(t, applied)
	assert.False(t, called)
	assert.Equal(t, 1, e.applied(t))

	require.Len(t, e.events, 2)
	assert.Equal(t, uow.EventInbox, e.events[0].Kind)
	assert.Equal(t, e.table+"_inbox", e.events[0].Source)
	assert.Equal(t, 1, e.events[0].Count)
	assert.Equal(t, 0, e.events[1].Count)
}

// A failing handler leaves no inbox record (nor its own changes): the
// redelivered message is applied.
func TestInboxFailureLeavesNoRecord(t *testing.T) {
	e := newInboxEnv(t)
	ctx := context.Background()
	boom := errors.New("boom")
	applied, err := e.in.Handle(ctx, e.m, "m1", func(ctx context.Context) error {
		if err := e.apply(ctx); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.False(t, applied)
	assert.Equal(t, 0, e.applied(t))
	var n int
	require.NoError(t, e.db.Get(&n, `SELECT count(*) FROM `+e.table+`_inbox`))
	assert.Zero(t, n)
	assert.ErrorIs(t, e.events[0].Err, boom)

	applied, err = e.in.Handle(ctx, e.m, "m1", e.apply)
	require.NoError(t, err)
	assert.True(t, applied)
	assert.Equal(t, 1, e.applied(t))
}

// Concurrent deliveries of one message are applied once.
func TestInboxConcurrentDuplicates(t *testing.T) {
	e := newInboxEnv(t)
	const n = 8
	var applied atomic.Int32
	var calls atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			ok, err := e.in.Handle(context.Background(), e.m, "m1", func(ctx context.Context) error {
				calls.Add(1)
				return e.apply(ctx)
			})
			assert.NoError(t, err)
			if ok {
				applied.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int32(1), applied.Load())
	assert.Equal(t, int32(1), calls.Load())
	assert.Equal(t, 1, e.applied(t))
}

func TestInboxInvalid(t *testing.T) {
	e := newInboxEnv(t)
	_, err := e.in.Handle(context.Background(), e.m, "", e.apply)
	assert.ErrorIs(t, err, outbox.ErrInvalidMessage)
	_, err = e.in.Handle(context.Background(), nil, "x", e.apply)
	assert.ErrorIs(t, err, outbox.ErrInvalidConfig)
	_, err = outbox.NewInbox(e.db, outbox.Postgres, outbox.InboxConfig{Table: "Bad-Name"})
	assert.ErrorIs(t, err, outbox.ErrInvalidName)
}
