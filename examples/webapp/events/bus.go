package events

import (
	"context"
	"log/slog"
	"sync"

	"github.com/uowkit/uowkit/examples/webapp/domain"
)

// Bus delivers events to subscribers, synchronously and in order.
type Bus struct {
	mu   sync.RWMutex
	subs []func(context.Context, domain.Event)
}

// Subscribe adds a subscriber.
func (b *Bus) Subscribe(fn func(context.Context, domain.Event)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, fn)
}

// Publish delivers e to every subscriber.
func (b *Bus) Publish(ctx context.Context, e domain.Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, fn := range b.subs {
		fn(ctx, e)
	}
}

// Logger is a subscriber that logs every event.
func Logger(l *slog.Logger) func(context.Context, domain.Event) {
	return func(ctx context.Context, e domain.Event) {
		l.InfoContext(ctx, "event published", slog.Int64("id", e.ID), slog.String("type", e.Type), slog.String("payload", e.Payload))
	}
}
