package natsjs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultDuplicateWindow is the duplicate window [EnsureStream] gives a
// stream whose configuration sets none: JetStream's own default, two
// minutes, made explicit.
const DefaultDuplicateWindow = 2 * time.Minute

// EnsureStream creates the stream cfg describes, or updates an existing one
// to cfg, and returns it. A zero cfg.Duplicates becomes
// [DefaultDuplicateWindow].
//
// # The duplicate window
//
// The stream remembers each message id (Nats-Msg-Id) for cfg.Duplicates
// and acknowledges a second publish of the same id within that window as a
// duplicate, without storing it. That is what turns a relay's at-least-once
// publishing into exactly one copy on the stream, and it holds only if
// every republish of a message happens within the window after its first
// publish. A message is published again when:
//
//   - the relay that published it died (or lost its lease) before marking
//     it delivered: another relay takes it over once the lease has
//     expired, up to [outbox.RelayConfig].Lease later, plus the time it
//     takes the new relay to reach the message;
//   - the publish failed or timed out after the stream had stored the
//     message: the relay retries after its backoff, up to
//     [outbox.RelayConfig].BackoffMax (plus a fifth of jitter) later, and
//     again after each failure. The window is counted from the first
//     stored copy: a republish does not extend it.
//
// So choose cfg.Duplicates longer than the relay's Lease plus its
// BackoffMax plus a publish timeout, with a margin for a relay paused by a
// slow machine. The relay's defaults (a 10s lease, a backoff capped at 10s)
// want well under a minute, which the default two minutes covers. A longer
// window costs the server memory for the ids of every message published in
// it. A republish after the window (a broker outage longer than the window,
// during which a relay kept retrying a message the stream had in fact
// stored) is stored again, and the consumer's inbox then removes that
// duplicate on the other end.
//
// The window may not exceed cfg.MaxAge when that is set (the server
// refuses the stream).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if cfg.Duplicates == 0 {
		cfg.Duplicates = DefaultDuplicateWindow
	}
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("natsjs: stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
