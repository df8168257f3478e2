package natsjs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uowkit/uowkit/outbox"
)

// Headers this package sets beside the message's own, so that [Consume] can
// rebuild the [outbox.Message] a relay published. The message's id travels
// in JetStream's own [jetstream.MsgIDHeader] (Nats-Msg-Id), which the stream
// deduplicates on.
const (
	// HeaderKey carries [outbox.Message.Key] (absent when the key is empty).
	HeaderKey = "Uowkit-Outbox-Key"
	// HeaderRecordedAt carries [outbox.Message.RecordedAt], in RFC 3339
	// with nanoseconds (absent when it is zero).
	HeaderRecordedAt = "Uowkit-Outbox-Recorded-At"
)

// ErrNoID is returned by [Publisher.Publish] for a message without an id:
// without one the stream cannot remove a relay's retry, so the message is
// not published at all.
var ErrNoID = errors.New("natsjs: message has no id")

// Publisher publishes outbox messages to JetStream; it is the
// [outbox.Publisher] a relay is given. Publish returns nil only once the
// stream acknowledged the message (its PubAck), so a relay marks a message
// delivered only when it is stored.
//
// Every message is published with its id as Nats-Msg-Id. A relay that dies
// after the PubAck and before it marks the message delivered publishes it
// again when it (or another relay) takes over: the stream drops that
// second copy, and acknowledges it as a duplicate, provided it arrives
// within the stream's duplicate window ([jetstream.StreamConfig.Duplicates];
// see [EnsureStream] for how long the window must be).
//
// A Publisher is safe for concurrent use.
type Publisher struct {
	js     jetstream.JetStream
	stream string
	dups   atomic.Int64
}

var _ outbox.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher on js. When stream is not empty, every
// publish also requires that the message lands in that stream (the
// Nats-Expected-Stream header): a subject captured by no stream, or by
// another one whose duplicate window nobody checked, is an error rather
// than a message stored where consumers do not look. With stream empty,
// any stream capturing the subject will do.
func NewPublisher(js jetstream.JetStream, stream string) *Publisher {
	if js == nil {
		panic("natsjs: NewPublisher with a nil JetStream")
	}
	return &Publisher{js: js, stream: stream}
}

// Publish publishes m.Payload to m.Subject with m.Headers, m.ID as
// Nats-Msg-Id, and m.Key and m.RecordedAt in [HeaderKey] and
// [HeaderRecordedAt], and waits for the stream's acknowledgement. It returns
// nil once the stream stored the message, or acknowledged it as a
// duplicate of one it stored earlier under the same id (the relay's
// retry of a message it published before crashing, or before losing its
// lease). It returns an error when no stream answered (no stream captures
// the subject, or JetStream is unavailable), when the stream refused the
// message, or when ctx ended first; the message may then have been stored
// or not, and the relay publishes it again later, which the duplicate
// window absorbs. ctx bounds the wait; without a deadline the JetStream
// context's default timeout applies.
func (p *Publisher) Publish(ctx context.Context, m outbox.Message) error {
	if m.ID == "" {
		return ErrNoID
	}
	msg := &nats.Msg{Subject: m.Subject, Data: m.Payload, Header: make(nats.Header, len(m.Headers)+3)}
	for k, v := range m.Headers {
		msg.Header.Set(k, v)
	}
	if m.Key != "" {
		msg.Header.Set(HeaderKey, m.Key)
	}
	if !m.RecordedAt.IsZero() {
		msg.Header.Set(HeaderRecordedAt, m.RecordedAt.UTC().Format(time.RFC3339Nano))
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.ID)}
	if p.stream != "" {
		opts = append(opts, jetstream.WithExpectStream(p.stream))
	}
	ack, err := p.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return fmt.Errorf("natsjs: publish %s to %s: %w", m.ID, m.Subject, err)
	}
	if ack == nil || ack.Stream == "" {
		// PublishMsg reports these itself; kept so that a nil error always
		// means a stored message, whatever the client library does.
		return fmt.Errorf("natsjs: publish %s to %s: %w", m.ID, m.Subject, jetstream.ErrInvalidJSAck)
	}
	if ack.Duplicate {
		p.dups.Add(1)
	}
	return nil
}

// Duplicates returns how many of p's publishes the stream acknowledged as
// duplicates of a message it already had: the republishes of relays that
// crashed, lost their lease or saw a publish fail after the stream stored
// it, which the duplicate window kept off the stream. A steady stream of
// them is worth a look at the relays; a few after a restart are the
// mechanism working.
func (p *Publisher) Duplicates() int64 { return p.dups.Load() }
