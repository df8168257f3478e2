package natsjs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/outbox/natsjs"
	"github.com/uowkit/uowkit/uow"
)

// At least once, end to end, applied once: units record messages in the
// outbox, a relay publishes them to JetStream, and Consume feeds them to
// an inbox that updates a projection. A handler that fails (an error, a
// panic) before its unit commits gets its message again and applies it
// then; a message whose unit committed but whose acknowledgement was lost
// comes again, changes nothing, and is acknowledged.
func TestConsumeAppliesOnceThroughInbox(t *testing.T) {
	t.Parallel()
	const n = 20
	e := newEnv(t)
	js := connect(t)
	name, subject := stream(t, js, 0)
	msgs := e.record(t, subject+".order", n, 5)
	p := natsjs.NewPublisher(js, name)
	r, err := outbox.NewRelay(e.db.DB, outbox.Postgres, p, e.relayConfig())
	require.NoError(t, err)
	e.drain(t, r)

	var mu sync.Mutex
	var applied, duplicates int
	in, err := outbox.NewInbox(e.db, outbox.Postgres, outbox.InboxConfig{
		Table: e.table + "_inbox",
		Observer: uow.ObserverFunc(func(_ context.Context, ev uow.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ev.Err == nil && ev.Count == 1:
				applied++
			case ev.Err == nil:
				duplicates++
			}
		}),
	})
	require.NoError(t, err)

	failing, panicking, ackLost := msgs[3].ID, msgs[7].ID, msgs[11].ID
	calls := map[string]int{}
	project := func(ctx context.Context, m outbox.Message) error {
		mu.Lock()
		calls[m.ID]++
		first := calls[m.ID] == 1
		mu.Unlock()
		// The projection counts applications: a second one would show.
		if _, err := uow.FromContext(ctx).On(e.db).ExecContext(ctx, `INSERT INTO `+e.table+`_proj (message_id, applied) VALUES ($1, 1)
			ON CONFLICT (message_id) DO UPDATE SET applied = `+e.table+`_proj.applied + 1`, m.ID); err != nil {
			return err
		}
		switch {
		case first && m.ID == failing:
			return errors.New("projection store unavailable")
		case first && m.ID == panicking:
			panic("projection bug")
		}
		return nil
	}
	inboxed := natsjs.InboxHandler(in, e.m, project)
	handled, settled := map[string]int{}, map[string]bool{}
	done := make(chan struct{})
	closeDone := sync.OnceFunc(func() { close(done) })
	handle := func(ctx context.Context, m outbox.Message) error {
		err := inboxed(ctx, m)
		mu.Lock()
		defer mu.Unlock()
		handled[m.ID]++
		if err == nil && m.ID == ackLost && handled[m.ID] == 1 {
			err = errors.New("acknowledgement lost") // committed, yet delivered again
		}
		if err == nil {
			settled[m.ID] = true
		}
		if len(settled) == n && handled[ackLost] == 2 {
			closeDone()
		}
		return err
	}
	stop := consume(t, js, name, "projection", handle, natsjs.ConsumeOptions{AckWait: 10 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	select {
	case <-done:
	case <-time.After(time.Minute):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("after a minute: %d of %d messages handled without error", len(settled), n)
	}
	require.NoError(t, stop())

	var counts []int
	require.NoError(t, e.db.Select(&counts, `SELECT applied FROM `+e.table+`_proj ORDER BY message_id`))
	assert.Len(t, counts, n, "every message projected")
	for i, c := range counts {
		assert.Equal(t, 1, c, "message %d applied %d times", i, c)
	}
	var recorded int
	require.NoError(t, e.db.Get(&recorded, `SELECT count(*) FROM `+e.table+`_inbox`))
	assert.Equal(t, n, recorded)

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 2, calls[failing], "the failed message was handled again")
	assert.Equal(t, 2, calls[panicking], "the panicked message was handled again")
	assert.Equal(t, 1, calls[ackLost], "the redelivered applied message did not reach the projection")
	assert.Equal(t, 2, handled[ackLost])
	assert.Equal(t, n, applied)
	assert.Equal(t, 1, duplicates)

	info := consumerInfo(t, js, name, "projection")
	assert.Equal(t, uint64(n), info.AckFloor.Stream, "every message acknowledged")
	assert.Zero(t, info.NumAckPending)
	assert.Zero(t, info.NumPending)
}

func TestInboxHandlerRefusesNil(t *testing.T) {
	assert.PanicsWithValue(t, "natsjs: InboxHandler with a nil inbox, manager or function", func() {
		natsjs.InboxHandler(nil, nil, nil)
	})
}
