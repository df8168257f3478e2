// Package natsjs connects the transactional outbox of package outbox to NATS
// JetStream, with the official client (github.com/nats-io/nats.go and its
// jetstream package): a [Publisher] for the relay, and [Consume] with
// [InboxHandler] for the services that consume the messages.
//
// # Publishing
//
// A unit of work records messages with outbox.Outbox.Record; once it has
// committed, an outbox.Relay hands them, one at a time, to a [Publisher]:
//
//	js, _ := jetstream.New(nc)
//	natsjs.EnsureStream(ctx, js, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
//	relay, _ := outbox.NewRelay(db.DB, outbox.Postgres, natsjs.NewPublisher(js, "ORDERS"), outbox.RelayConfig{})
//	go relay.Run(ctx)
//
// [Publisher.Publish] waits for the stream's PubAck: the relay marks a
// message delivered only once JetStream has stored it. The message's id
// travels as Nats-Msg-Id, which the stream deduplicates on: a relay that
// crashes after the PubAck and before its mark, or loses its lease in
// between, leaves the message undelivered in the outbox, the relay that
// takes over publishes it again, and the stream acknowledges that copy as a
// duplicate without storing it. That holds within the stream's duplicate
// window, which must be longer than the relay's lease plus its backoff
// (see [EnsureStream]).
//
// # Consuming
//
// [Consume] reads a durable pull consumer with explicit acknowledgement and
// acknowledges a message only once its handler has returned nil; a failed
// handler's message is delivered again after a bounded, growing delay.
// Delivery is at least once, so the handler goes through an
// outbox.Inbox: [InboxHandler] records the message's id and applies its
// effect in one unit of work, so that a message delivered twice is applied
// once:
//
//	in, _ := outbox.NewInbox(db, outbox.Postgres, outbox.InboxConfig{})
//	err := natsjs.Consume(ctx, js, "ORDERS", "billing", natsjs.InboxHandler(in, m,
//		func(ctx context.Context, msg outbox.Message) error {
//			return invoices.Open(ctx, msg.Payload) // through the unit in ctx
//		}), natsjs.ConsumeOptions{})
//
// Together: a message is published if and only if its unit committed, it
// is stored once on the stream (within the duplicate window), and applied
// once by each consumer with an inbox, whatever crashes in between.
// docs/natsjs.md tells the whole story.
package natsjs
