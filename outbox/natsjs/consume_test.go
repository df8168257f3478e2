package natsjs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/outbox/natsjs"
)

// consume runs natsjs.Consume on a goroutine until the returned stop is
// called; stop cancels it and returns its error once it has returned.
func consume(t *testing.T, js jetstream.JetStream, name, durable string, handle func(context.Context, outbox.Message) error, opts natsjs.ConsumeOptions) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- natsjs.Consume(ctx, js, name, durable, handle, opts) }()
	var err error
	var stopped atomic.Bool
	stop = func() error {
		if stopped.CompareAndSwap(false, true) {
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// consumerInfo returns the durable consumer's state.
func consumerInfo(t *testing.T, js jetstream.JetStream, name, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, name, durable)
	require.NoError(t, err)
	info, err := c.Info(ctx)
	require.NoError(t, err)
	return info
}

// A message without Nats-Msg-Id cannot be deduplicated: it is terminated,
// once, and the messages behind it flow.
func TestConsumeTerminatesMessageWithoutID(t *testing.T) {
	t.Parallel()
	js := connect(t)
	name, subject := stream(t, js, 0)
	ctx := context.Background()
	_, err := js.Publish(ctx, subject+".raw", []byte("no id"))
	require.NoError(t, err)
	good := outbox.Message{ID: outbox.NewID(), Subject: subject + ".good"}
	require.NoError(t, natsjs.NewPublisher(js, name).Publish(ctx, good))

	handled := make(chan outbox.Message, 10)
	stop := consume(t, js, name, "term", func(_ context.Context, m outbox.Message) error {
		handled <- m
		return nil
	}, natsjs.ConsumeOptions{AckWait: time.Second, MinBackoff: 10 * time.Millisecond})
	m := <-handled
	assert.Equal(t, good.ID, m.ID, "the message without an id never reaches the handler")
	require.NoError(t, stop())

	info := consumerInfo(t, js, name, "term")
	assert.Equal(t, uint64(2), info.AckFloor.Stream, "both messages are settled: the first terminated, the second acked")
	assert.Zero(t, info.NumAckPending)
	assert.Zero(t, info.NumRedelivered, "nothing redelivered")
	assert.Empty(t, handled)
}

// Consume stops on its context's end only after the handler in flight has
// finished, on a context that was not cancelled, and its message was
// acknowledged.
func TestConsumeGracefulStop(t *testing.T) {
	t.Parallel()
	js := connect(t)
	name, subject := stream(t, js, 0)
	ctx := context.Background()
	p := natsjs.NewPublisher(js, name)
	require.NoError(t, p.Publish(ctx, outbox.Message{ID: "m1", Subject: subject + ".x"}))
	require.NoError(t, p.Publish(ctx, outbox.Message{ID: "m2", Subject: subject + ".x"}))

	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	var handlerErr atomic.Value
	stop := consume(t, js, name, "graceful", func(hctx context.Context, m outbox.Message) error {
		calls.Add(1)
		close(started)
		<-release
		if err := hctx.Err(); err != nil {
			handlerErr.Store(err)
		}
		return nil
	}, natsjs.ConsumeOptions{AckWait: 5 * time.Second})
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Consume returned (%v) while its handler was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-stopped)
	assert.Nil(t, handlerErr.Load(), "the handler's context outlives the stop")
	assert.Equal(t, int32(1), calls.Load(), "no message is started after the stop")

	info := consumerInfo(t, js, name, "graceful")
	assert.Equal(t, uint64(1), info.AckFloor.Stream, "the message in flight was acknowledged before Consume returned")
}

// A handler that does not finish within StopGrace of the stop sees its
// context cancelled; its message goes back to the stream.
func TestConsumeStopGrace(t *testing.T) {
	t.Parallel()
	js := connect(t)
	name, subject := stream(t, js, 0)
	require.NoError(t, natsjs.NewPublisher(js, name).Publish(context.Background(), outbox.Message{ID: "slow", Subject: subject + ".x"}))

	started := make(chan struct{})
	stop := consume(t, js, name, "grace", func(hctx context.Context, m outbox.Message) error {
		close(started)
		<-hctx.Done()
		return hctx.Err()
	}, natsjs.ConsumeOptions{AckWait: 10 * time.Second, StopGrace: 50 * time.Millisecond, MinBackoff: 10 * time.Millisecond})
	<-started
	require.NoError(t, stop())
	info := consumerInfo(t, js, name, "grace")
	assert.Zero(t, info.AckFloor.Stream, "not acknowledged")

	// Given back with a short delay, not held for AckWait: another
	// consumer on the durable gets it well before 10s.
	got := make(chan string, 1)
	stop2 := consume(t, js, name, "grace", func(_ context.Context, m outbox.Message) error {
		got <- m.ID
		return nil
	}, natsjs.ConsumeOptions{AckWait: 10 * time.Second})
	select {
	case id := <-got:
		assert.Equal(t, "slow", id)
	case <-time.After(8 * time.Second):
		t.Fatal("the message was not given back")
	}
	require.NoError(t, stop2())
}

// A handler that runs longer than AckWait keeps its message: Consume
// tells the server it is in progress, so it is not delivered meanwhile to
// another Consume of the same durable, idle and waiting for messages.
func TestConsumeLongHandlerKeepsItsMessage(t *testing.T) {
	t.Parallel()
	js := connect(t)
	name, subject := stream(t, js, 0)
	require.NoError(t, natsjs.NewPublisher(js, name).Publish(context.Background(), outbox.Message{ID: "long", Subject: subject + ".x"}))

	var calls atomic.Int32
	var during *jetstream.ConsumerInfo // the consumer's state as the handler ends
	done := make(chan struct{})
	handle := func(ctx context.Context, _ outbox.Message) error {
		if calls.Add(1) == 1 {
			time.Sleep(2500 * time.Millisecond) // 2.5 × AckWait
			c, err := js.Consumer(ctx, name, "long")
			if err == nil {
				during, _ = c.Info(ctx)
			}
			close(done)
		}
		return nil
	}
	opts := natsjs.ConsumeOptions{AckWait: time.Second}
	stop1 := consume(t, js, name, "long", handle, opts)
	stop2 := consume(t, js, name, "long", handle, opts)
	<-done
	require.NoError(t, stop1())
	require.NoError(t, stop2())
	require.NotNil(t, during)
	assert.Equal(t, uint64(1), during.Delivered.Consumer, "delivered again while its handler ran")
	assert.Zero(t, during.NumRedelivered)
	assert.Equal(t, uint64(1), consumerInfo(t, js, name, "long").AckFloor.Stream)
	assert.Equal(t, int32(1), calls.Load())
}

// A failing handler's message is given back with a growing delay and
// handled again until it succeeds; a panic counts as a failure.
func TestConsumeRetriesFailedHandler(t *testing.T) {
	t.Parallel()
	js := connect(t)
	name, subject := stream(t, js, 0)
	require.NoError(t, natsjs.NewPublisher(js, name).Publish(context.Background(), outbox.Message{ID: "flaky", Subject: subject + ".x"}))

	var calls atomic.Int32
	var times [4]time.Time
	done := make(chan struct{})
	stop := consume(t, js, name, "retry", func(_ context.Context, m outbox.Message) error {
		n := calls.Add(1)
		times[n-1] = time.Now()
		switch n {
		case 1:
			return errors.New("database down")
		case 2:
			panic("handler bug")
		case 3:
			return errors.New("still down")
		}
		close(done)
		return nil
	}, natsjs.ConsumeOptions{AckWait: 10 * time.Second, MinBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	select {
	case <-done:
	case <-time.After(9 * time.Second):
		t.Fatalf("handled %d times, never succeeded before AckWait", calls.Load())
	}
	require.NoError(t, stop())
	assert.Equal(t, int32(4), calls.Load())
	// The delays: 100ms, 200ms, 300ms (capped). Only lower bounds are
	// certain; they show that the delay grows.
	assert.GreaterOrEqual(t, times[1].Sub(times[0]), 100*time.Millisecond)
	assert.GreaterOrEqual(t, times[2].Sub(times[1]), 200*time.Millisecond)
	assert.GreaterOrEqual(t, times[3].Sub(times[2]), 300*time.Millisecond)
	info := consumerInfo(t, js, name, "retry")
	assert.Equal(t, uint64(1), info.AckFloor.Stream)
	assert.Zero(t, info.NumAckPending)
}

// A consumer whose stream does not exist is an error, not a silent wait;
// so is a consumer without a durable name.
func TestConsumeMissingStream(t *testing.T) {
	t.Parallel()
	js := connect(t)
	err := natsjs.Consume(context.Background(), js, "NATSJS_NO_SUCH_STREAM", "d", func(context.Context, outbox.Message) error { return nil }, natsjs.ConsumeOptions{})
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	err = natsjs.Consume(context.Background(), js, "NATSJS_NO_SUCH_STREAM", "", func(context.Context, outbox.Message) error { return nil }, natsjs.ConsumeOptions{})
	assert.ErrorIs(t, err, natsjs.ErrNoDurable)
}
