package projection

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/outbox/natsjs"
	"github.com/uowkit/uowkit/uow"
)

// Durable is the name of the projector's durable consumer on the stream:
// every projector process shares it, so that the server spreads the events
// among them and remembers how far they got.
const Durable = "webapp-projector"

// Projector applies events to the read model.
type Projector struct {
	m      *uow.Manager
	inbox  *outbox.Inbox
	writer *store.Projection
	signal *Signal
	log    *slog.Logger
}

// New returns the projector writing to db (migrated by store.Migrate) with
// the units of m, one of whose databases db is.
func New(db *sqlx.DB, m *uow.Manager, log *slog.Logger) (*Projector, error) {
	d, err := store.DialectOf(db)
	if err != nil {
		return nil, err
	}
	in, err := outbox.NewInbox(db, d.OutboxDialect(), outbox.InboxConfig{Table: store.InboxTable})
	if err != nil {
		return nil, err
	}
	return &Projector{m: m, inbox: in, writer: store.NewProjection(db), signal: NewSignal(), log: log}, nil
}

// Signal is told of every event applied, once committed.
func (p *Projector) Signal() *Signal { return p.signal }

// Handle applies msg once (outbox.Inbox.Handle): a duplicate changes
// nothing. It fails, and the message is to be delivered again, when the
// event depends on one not applied yet (store.ErrNotYet) or the unit
// fails. A message that is not an event of the contract is logged and
// dropped.
func (p *Projector) Handle(ctx context.Context, msg outbox.Message) error {
	e, err := events.Decode(msg.Subject, msg.Payload)
	if err != nil {
		p.log.ErrorContext(ctx, "projector: dropping a message that is not an event", slog.String("id", msg.ID),
			slog.String("subject", msg.Subject), slog.Any("error", err))
		return nil
	}
	_, err = p.inbox.Handle(ctx, p.m, msg.ID, func(ctx context.Context) error {
		if err := p.writer.Apply(ctx, e, msg.RecordedAt); err != nil {
			return err
		}
		return uow.AfterCommit(ctx, func(context.Context) error { p.signal.Broadcast(); return nil })
	})
	return err
}

// Consuming options: an event that arrived before the one it depends on
// (store.ErrNotYet) is delivered again soon.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Run consumes the stream through the durable consumer Durable until ctx
// ends, then lets the event in flight commit and be acknowledged, and
// returns nil.
func (p *Projector) Run(ctx context.Context, js jetstream.JetStream) error {
	err := natsjs.Consume(ctx, js, events.Stream, Durable, p.Handle, natsjs.ConsumeOptions{
		FilterSubject: events.Subjects,
		MinBackoff:    minBackoff,
		MaxBackoff:    maxBackoff,
		Logger:        p.log,
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Pending returns how many of the stream's messages the projector's
// consumer has not yet had acknowledged: not yet delivered, or delivered
// and not acknowledged.
func Pending(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	c, err := js.Consumer(ctx, events.Stream, Durable)
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Signal broadcasts changes: C returns a channel that is closed at the
// next Broadcast. It is safe for concurrent use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewSignal returns a Signal.
func NewSignal() *Signal { return &Signal{ch: make(chan struct{})} }

// C returns the channel the next Broadcast closes.
func (s *Signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// Broadcast wakes everyone waiting on C.
func (s *Signal) Broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}
