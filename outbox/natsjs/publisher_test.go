package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/outbox/natsjs"
)

func TestPublishRoundTrip(t *testing.T) {
	t.Parallel()
	js := connect(t)
	name, subject := stream(t, js, 0)
	p := natsjs.NewPublisher(js, name)
	ctx := context.Background()

	want := outbox.Message{
		ID:         outbox.NewID(),
		Subject:    subject + ".team.added",
		Key:        "team-7",
		Payload:    []byte(`{"team":7}`),
		Headers:    map[string]string{"Content-Type": "application/json", "trace-id": "abc"},
		RecordedAt: time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC),
	}
	require.NoError(t, p.Publish(ctx, want))

	s, err := js.Stream(ctx, name)
	require.NoError(t, err)
	raw, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, want.ID, raw.Header.Get(jetstream.MsgIDHeader), "the id travels as Nats-Msg-Id")

	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	got, err := natsjs.Decode(msg)
	require.NoError(t, err)
	assert.Equal(t, want.ID, got.ID)
	assert.Equal(t, want.Subject, got.Subject)
	assert.Equal(t, want.Key, got.Key)
	assert.Equal(t, want.Payload, got.Payload)
	assert.Equal(t, want.Headers, got.Headers, "the message's own headers, without JetStream's")
	assert.True(t, want.RecordedAt.Equal(got.RecordedAt), "recorded at %v, decoded %v", want.RecordedAt, got.RecordedAt)
}

// A second publish of an id, as a relay that lost its lease, or crashed
// before marking, makes: nil (the PubAck says duplicate), and one message.
func TestPublishDuplicateIsAcknowledgedOnce(t *testing.T) {
	t.Parallel()
	js := connect(t)
	name, subject := stream(t, js, time.Minute)
	p := natsjs.NewPublisher(js, name)
	ctx := context.Background()

	m := outbox.Message{ID: outbox.NewID(), Subject: subject + ".x", Payload: []byte("once")}
	require.NoError(t, p.Publish(ctx, m))
	m.Payload = []byte("again") // the id alone decides
	require.NoError(t, p.Publish(ctx, m), "a duplicate is success: the stream has the message")
	require.NoError(t, p.Publish(ctx, outbox.Message{ID: outbox.NewID(), Subject: subject + ".x"}))

	total, ids := streamIDs(t, js, name)
	assert.Equal(t, 2, total)
	assert.Equal(t, 1, ids[m.ID])
}

func TestPublishFailures(t *testing.T) {
	t.Parallel()
	js := connect(t)
	name, subject := stream(t, js, 0)
	other, _ := stream(t, js, 0)
	ctx := context.Background()

	t.Run("no id", func(t *testing.T) {
		err := natsjs.NewPublisher(js, name).Publish(ctx, outbox.Message{Subject: subject + ".x"})
		assert.ErrorIs(t, err, natsjs.ErrNoID)
	})
	t.Run("no stream captures the subject", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := natsjs.NewPublisher(js, "").Publish(ctx, outbox.Message{ID: outbox.NewID(), Subject: "natsjs_nobody_listens." + outbox.NewID()})
		assert.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
	})
	t.Run("another stream than the expected one", func(t *testing.T) {
		err := natsjs.NewPublisher(js, other).Publish(ctx, outbox.Message{ID: outbox.NewID(), Subject: subject + ".x"})
		var apiErr *jetstream.APIError
		assert.True(t, errors.As(err, &apiErr), "%v", err)
	})
	t.Run("context ended", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		err := natsjs.NewPublisher(js, name).Publish(ctx, outbox.Message{ID: outbox.NewID(), Subject: subject + ".x"})
		assert.ErrorIs(t, err, context.Canceled)
	})
	total, _ := streamIDs(t, js, name)
	assert.Equal(t, 0, total, "no failed publish stored anything")
}

func TestEnsureStreamWindow(t *testing.T) {
	t.Parallel()
	js := connect(t)
	ctx := context.Background()
	name, subject := stream(t, js, 0)
	s, err := js.Stream(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, natsjs.DefaultDuplicateWindow, s.CachedInfo().Config.Duplicates)

	// Again, with a window: the stream is updated, not refused.
	s, err = natsjs.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject + ".>"}, Duplicates: 5 * time.Minute, Storage: jetstream.MemoryStorage,
	})
	require.NoError(t, err)
	assert.Equal(t, 5*time.Minute, s.CachedInfo().Config.Duplicates)
}
