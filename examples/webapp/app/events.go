package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/examples/webapp/projection"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/outbox/natsjs"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx/pgnotify"
)

// SQLitePoll is the relay's poll interval on SQLite, where no LISTEN/NOTIFY
// wakes it for the commits of other processes (the service's own wake it
// at once).
const SQLitePoll = 100 * time.Millisecond

// EnsureStream creates the events' stream (events.Stream, capturing
// events.Subjects, stored on disk, natsjs's default duplicate window) if
// it is absent, or updates it to that configuration.
func EnsureStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := natsjs.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:     events.Stream,
		Subjects: []string{events.Subjects},
		Storage:  jetstream.FileStorage,
	})
	return err
}

// EventsConfig says what RunEvents runs.
type EventsConfig struct {
	// DatabaseURL is PostgreSQL's, for the relay's LISTEN (uowpgx/pgnotify);
	// empty on SQLite, where the relay polls every SQLitePoll and is woken
	// by the service's own commits.
	DatabaseURL string
	// NoRelay and NoProjector leave the relay or the projector out.
	NoRelay, NoProjector bool
	// Relay adjusts the relay's configuration (Wake and, on SQLite, Poll
	// are set by RunEvents when left zero).
	Relay outbox.RelayConfig
	// Log receives the relay's rounds (at Debug) and failures.
	Log *slog.Logger
}

// RunEvents runs the outbox's relay, which publishes the committed events
// to JetStream with a natsjs.Publisher, and the projector, until ctx ends;
// it then stops them (the relay releases its lease, the projector lets the
// event in flight commit and be acknowledged) and returns. It creates the
// stream if absent (EnsureStream).
func (a *App) RunEvents(ctx context.Context, js jetstream.JetStream, c EventsConfig) error {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if err := EnsureStream(ctx, js); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	if !c.NoRelay {
		rc := c.Relay
		if rc.Observer == nil {
			rc.Observer = uow.NewSlogObserver(c.Log)
		}
		switch {
		case a.dialect == store.SQLite:
			if rc.Wake == nil {
				rc.Wake = a.wake
			}
			if rc.Poll == 0 {
				rc.Poll = SQLitePoll
			}
		case c.DatabaseURL != "" && rc.Wake == nil:
			l, err := pgnotify.New(c.DatabaseURL, outbox.DefaultTable, pgnotify.Config{
				OnError: func(err error) { c.Log.Warn("outbox listener", slog.Any("error", err)) },
			})
			if err != nil {
				return err
			}
			rc.Wake = l.C()
			wg.Go(func() {
				if err := l.Run(ctx); err != nil && ctx.Err() == nil {
					errs <- fmt.Errorf("outbox listener: %w", err)
				}
			})
		}
		relay, err := outbox.NewRelay(a.db.DB, a.dialect.OutboxDialect(), natsjs.NewPublisher(js, events.Stream), rc)
		if err != nil {
			return err
		}
		wg.Go(func() {
			if err := relay.Run(ctx); err != nil {
				errs <- fmt.Errorf("relay: %w", err)
			}
		})
	}
	if !c.NoProjector {
		wg.Go(func() {
			if err := a.Projector.Run(ctx, js); err != nil {
				errs <- fmt.Errorf("projector: %w", err)
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// CaughtUp reports whether every event recorded has been published (the
// outbox has nothing undelivered) and the projector has had every message
// of the stream acknowledged.
func (a *App) CaughtUp(ctx context.Context, js jetstream.JetStream) (bool, error) {
	var n int
	q := a.db.Rebind(`SELECT count(*) FROM ` + outbox.DefaultTable + ` WHERE delivered_at IS NULL`)
	if err := a.db.GetContext(ctx, &n, q); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	pending, err := projection.Pending(ctx, js)
	return pending == 0, err
}
