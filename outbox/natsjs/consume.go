package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uowkit/uowkit/outbox"
)

// ErrNoDurable is returned by [Consume] without a durable consumer name: an
// ephemeral consumer forgets what was acknowledged when it goes away.
var ErrNoDurable = errors.New("natsjs: Consume needs a durable consumer name")

// ConsumeOptions configure [Consume]. The zero value is usable.
type ConsumeOptions struct {
	// FilterSubject, when set, restricts the consumer to the stream's
	// messages on that subject (wildcards allowed).
	FilterSubject string
	// AckWait is how long the server waits for a message's
	// acknowledgement before it delivers the message again (0: 30s).
	// While a handler runs, Consume tells the server every third of it
	// that the message is still in progress, so a slow handler keeps its
	// message and a dead process's message is redelivered within AckWait.
	AckWait time.Duration
	// MaxDeliver bounds how many times a message is delivered (0:
	// unlimited). A message that reaches it is dropped by the server and
	// never applied: leave it unlimited unless you watch JetStream's
	// max-deliveries advisories.
	MaxDeliver int
	// MinBackoff and MaxBackoff bound the delay before a message whose
	// handler failed is delivered again: MinBackoff after the first
	// failure, doubling with each delivery, never more than MaxBackoff
	// (0: 1s and 1 minute).
	MinBackoff, MaxBackoff time.Duration
	// StopGrace is how long a handler still running when Consume's context
	// ends may go on before its own context is cancelled (0: AckWait; past
	// it the server redelivers the message anyway once the heartbeats stop).
	StopGrace time.Duration
	// Logger receives the messages Consume terminates, handler failures and
	// failed acknowledgements (nil: slog.Default()).
	Logger *slog.Logger
}

const (
	defaultAckWait    = 30 * time.Second
	defaultMinBackoff = time.Second
	defaultMaxBackoff = time.Minute
	// ackTimeout bounds the wait for the server to confirm an ack when the
	// handler's context has no deadline.
	ackTimeout = 5 * time.Second
)

// Consume delivers the messages of stream, through the durable pull
// consumer named durable (created, or updated to opts, with explicit
// acknowledgement), to handle, one at a time, until ctx ends. It returns nil
// once ctx has ended and the message in flight, if any, has been handled
// and acknowledged; an error when the consumer cannot be created, or the
// server ends the subscription (the consumer was deleted).
//
// Each message is turned into an [outbox.Message] by [Decode]. It is
// acknowledged only after handle returned nil, and the server is asked to
// confirm the acknowledgement; a message whose handler failed (an error or
// a panic) is given back to the server to be delivered again after a
// delay, bounded by opts.MinBackoff and opts.MaxBackoff. A message without
// a Nats-Msg-Id header can never be deduplicated by an inbox: it is
// terminated (never delivered again) and logged, rather than redelivered
// forever; so is one whose [HeaderRecordedAt] cannot be parsed.
//
// Delivery is at least once: a message is handled again when its
// acknowledgement is lost, when the process dies between handle and the
// acknowledgement, and when a relay's retry outlived the stream's
// duplicate window. So handle must be idempotent, and the way to make it so
// is an [outbox.Inbox]: handle calls the inbox's Handle with m.ID, which
// applies the message's effect and records its id in one unit of work,
// and skips an id it has recorded already. The acknowledgement then follows
// the commit, and a redelivered message changes nothing and is acknowledged.
//
// handle runs on a context that carries ctx's values but is not cancelled
// when ctx ends: a stopping consumer lets the handler in flight finish its
// unit of work, for at most opts.StopGrace, rather than roll it back
// half-way. Consume fetches one message at a time and none while a handler
// runs; should a message reach the pull request that was waiting when ctx
// ended, the server delivers it again after AckWait. To handle messages in
// parallel, run Consume several times on the same durable: the server
// spreads the messages among them, and the in-progress heartbeats keep a
// slow handler's message from being delivered to another meanwhile.
func Consume(ctx context.Context, js jetstream.JetStream, stream, durable string, handle func(context.Context, outbox.Message) error, opts ConsumeOptions) error {
	if handle == nil {
		panic("natsjs: Consume with a nil handler")
	}
	if durable == "" {
		return ErrNoDurable
	}
	c := newConsumer(opts)
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.ackWait,
		MaxDeliver:    -1,
		FilterSubject: opts.FilterSubject,
	}
	if opts.MaxDeliver > 0 {
		cfg.MaxDeliver = opts.MaxDeliver
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("natsjs: consumer %s on stream %s: %w", durable, stream, err)
	}
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		c.ackWait = info.Config.AckWait // the server's word, should it differ
	}
	// One message per pull, and no pull while a handler runs (the iterator
	// pulls from Next): nothing waits in the client's buffer while its
	// AckWait runs out.
	iter, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return fmt.Errorf("natsjs: consume %s on stream %s: %w", durable, stream, err)
	}
	defer iter.Stop()
	for ctx.Err() == nil {
		msg, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				// The server's idle heartbeats went missing (a busy server,
				// a slow network): the iterator has reset its pull and the
				// next Next pulls again. Not a reason to stop consuming.
				c.log.WarnContext(ctx, "natsjs: missed heartbeats; pulling again",
					slog.String("stream", stream), slog.String("durable", durable))
				continue
			}
			return fmt.Errorf("natsjs: consume %s on stream %s: %w", durable, stream, err)
		}
		c.process(ctx, msg, handle)
	}
	return nil
}

// consumer holds what Consume resolved from its options.
type consumer struct {
	ackWait, minBackoff, maxBackoff, stopGrace time.Duration
	log                                        *slog.Logger
}

func newConsumer(o ConsumeOptions) *consumer {
	c := &consumer{ackWait: o.AckWait, minBackoff: o.MinBackoff, maxBackoff: o.MaxBackoff, stopGrace: o.StopGrace, log: o.Logger}
	if c.ackWait <= 0 {
		c.ackWait = defaultAckWait
	}
	if c.minBackoff <= 0 {
		c.minBackoff = defaultMinBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = defaultMaxBackoff
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// process handles one message and acknowledges it, gives it back, or
// terminates it.
func (c *consumer) process(ctx context.Context, msg jetstream.Msg, handle func(context.Context, outbox.Message) error) {
	m, err := Decode(msg)
	if err != nil {
		c.log.ErrorContext(ctx, "natsjs: terminating a message that cannot be decoded",
			slog.String("subject", msg.Subject()), slog.Any("error", err))
		if err := msg.Term(); err != nil {
			c.log.WarnContext(ctx, "natsjs: terminate failed", slog.String("subject", msg.Subject()), slog.Any("error", err))
		}
		return
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := c.supervise(ctx, msg, cancel)
	err = call(hctx, handle, m)
	stop()
	if err == nil {
		// Not on hctx: a handler that succeeded after StopGrace still
		// deserves its ack.
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		defer acancel()
		if err := msg.DoubleAck(actx); err != nil {
			// The server delivers the message again; the inbox skips it.
			c.log.WarnContext(ctx, "natsjs: acknowledgement not confirmed", slog.String("id", m.ID), slog.Any("error", err))
		}
		return
	}
	delay := c.backoff(msg)
	if p, ok := err.(*panicError); ok {
		c.log.ErrorContext(ctx, "natsjs: handler panicked, message to be redelivered",
			slog.String("id", m.ID), slog.String("subject", m.Subject), slog.Duration("delay", delay),
			slog.Any("panic", p.value), slog.String("stack", string(p.stack)))
	} else {
		c.log.WarnContext(ctx, "natsjs: handler failed, message to be redelivered",
			slog.String("id", m.ID), slog.String("subject", m.Subject), slog.Duration("delay", delay), slog.Any("error", err))
	}
	if err := msg.NakWithDelay(delay); err != nil {
		c.log.WarnContext(ctx, "natsjs: nak failed; redelivered after AckWait", slog.String("id", m.ID), slog.Any("error", err))
	}
}

// supervise tells the server every third of AckWait that msg is in
// progress, and once ctx ends gives the handler StopGrace before cancelling
// its context. The returned function stops it and waits until it has.
func (c *consumer) supervise(ctx context.Context, msg jetstream.Msg, cancel context.CancelFunc) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		beat := time.NewTicker(c.ackWait / 3)
		defer beat.Stop()
		stopping := ctx.Done()
		var grace <-chan time.Time
		for {
			select {
			case <-done:
				return
			case <-beat.C:
				_ = msg.InProgress() // a lost one costs a redelivery, which the inbox absorbs
			case <-stopping:
				stopping = nil
				g := c.stopGrace
				if g <= 0 {
					g = c.ackWait
				}
				t := time.NewTimer(g)
				defer t.Stop()
				grace = t.C
			case <-grace:
				cancel()
				grace = nil
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// backoff is the delay before msg, whose handler failed, is delivered
// again: MinBackoff doubled per earlier delivery, at most MaxBackoff.
func (c *consumer) backoff(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 0 {
		n = md.NumDelivered
	}
	d := c.minBackoff
	for i := uint64(1); i < n && d < c.maxBackoff; i++ {
		d *= 2
	}
	return min(d, c.maxBackoff)
}

// call runs handle, turning a panic into a *panicError.
func call(ctx context.Context, handle func(context.Context, outbox.Message) error, m outbox.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return handle(ctx, m)
}

// panicError is a handler's panic, as Consume logs it.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("natsjs: handler panicked: %v", e.value) }

// Decode returns the [outbox.Message] a [Publisher] published as msg: its
// id from the Nats-Msg-Id header, its key and recording time from
// [HeaderKey] and [HeaderRecordedAt], and every other header that is not
// JetStream's own (Nats-*) in Headers. It fails with [ErrNoID] when msg has
// no Nats-Msg-Id.
func Decode(msg jetstream.Msg) (outbox.Message, error) {
	h := msg.Headers()
	m := outbox.Message{ID: h.Get(jetstream.MsgIDHeader), Subject: msg.Subject(), Payload: msg.Data()}
	if m.ID == "" {
		return m, ErrNoID
	}
	m.Key = h.Get(HeaderKey)
	if s := h.Get(HeaderRecordedAt); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return m, fmt.Errorf("natsjs: message %s: header %s: %w", m.ID, HeaderRecordedAt, err)
		}
		m.RecordedAt = t
	}
	for k, v := range h {
		if len(v) == 0 || k == HeaderKey || k == HeaderRecordedAt || isNATSHeader(k) {
			continue
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, len(h))
		}
		m.Headers[k] = v[0]
	}
	return m, nil
}

// isNATSHeader reports whether k is one of the headers NATS and JetStream
// set or read themselves (Nats-Msg-Id, Nats-Expected-Stream, …).
func isNATSHeader(k string) bool {
	return len(k) >= 5 && (k[:5] == "Nats-" || k[:5] == "NATS-")
}
