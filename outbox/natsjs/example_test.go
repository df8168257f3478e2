package natsjs_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/outbox/natsjs"
	"github.com/uowkit/uowkit/uow"
)

// exampleJetStream connects to the tests' NATS server and creates a stream
// of the example's own (a random name, so that concurrent runs never
// share one), capturing subjects "<subject>.>". close deletes the stream
// and closes the connection.
func exampleJetStream(subject string) (js jetstream.JetStream, name string, close func()) {
	nc, err := nats.Connect(natsURL())
	if err != nil {
		panic(err)
	}
	js, err = jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	name = strings.ToUpper(unique("EXAMPLE"))
	ctx := context.Background()
	if _, err := natsjs.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject + ".>"}, Storage: jetstream.MemoryStorage,
	}); err != nil {
		panic(err)
	}
	return js, name, func() {
		_ = js.DeleteStream(ctx, name)
		nc.Close()
	}
}

// The whole path: a unit of work records an event with the order it
// announces; the relay publishes the committed event to JetStream; a
// consumer applies it, once, through its inbox.
func Example() {
	subject := unique("example_orders")
	js, streamName, closeJS := exampleJetStream(subject)
	defer closeJS()
	db := pgtest.ExampleDB("natsjs_examples")
	defer db.Close()
	ctx := context.Background()
	for _, ddl := range []func(context.Context, outbox.Execer, outbox.Dialect, string) error{outbox.CreateSchema, outbox.CreateInboxSchema} {
		if err := ddl(ctx, db, outbox.Postgres, ""); err != nil {
			panic(err)
		}
	}
	db.MustExec(`CREATE TABLE IF NOT EXISTS example_orders (item text PRIMARY KEY)`)
	db.MustExec(`CREATE TABLE IF NOT EXISTS example_invoices (item text PRIMARY KEY)`)
	defer db.MustExec(`DROP TABLE uowkit_outbox, uowkit_outbox_keys, uowkit_outbox_lease, uowkit_inbox, example_orders, example_invoices`)
	m := uow.New(db)

	// The ordering service: the order and its event commit together.
	ob, err := outbox.New(db, outbox.Postgres, "")
	if err != nil {
		panic(err)
	}
	err = m.Do(ctx, func(ctx context.Context) error {
		if _, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `INSERT INTO example_orders (item) VALUES ('tea')`); err != nil {
			return err
		}
		return ob.Record(ctx, outbox.Message{Subject: subject + ".placed", Payload: []byte("tea")})
	})
	if err != nil {
		panic(err)
	}

	// The relay publishes what committed, and waits for each PubAck.
	relay, err := outbox.NewRelay(db.DB, outbox.Postgres, natsjs.NewPublisher(js, streamName), outbox.RelayConfig{})
	if err != nil {
		panic(err)
	}
	n, err := relay.Deliver(ctx)
	fmt.Println("published:", n, err)

	// The billing service: the invoice and the inbox's record of the
	// message commit together, then the message is acknowledged.
	in, err := outbox.NewInbox(db, outbox.Postgres, outbox.InboxConfig{})
	if err != nil {
		panic(err)
	}
	applied := make(chan string, 1)
	handle := natsjs.InboxHandler(in, m, func(ctx context.Context, msg outbox.Message) error {
		_, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `INSERT INTO example_invoices (item) VALUES ($1)`, string(msg.Payload))
		applied <- string(msg.Payload)
		return err
	})
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- natsjs.Consume(cctx, js, streamName, "billing", handle, natsjs.ConsumeOptions{}) }()
	fmt.Println("invoiced:", <-applied)
	stop()
	fmt.Println("consumer stopped:", <-done)
	// Output:
	// published: 1 <nil>
	// invoiced: tea
	// consumer stopped: <nil>
}

// A message published twice under one id, as by a relay that crashed
// between the PubAck and its mark, is stored once: the second publish is
// acknowledged as a duplicate.
func ExamplePublisher_Duplicates() {
	subject := unique("example_dup")
	js, streamName, closeJS := exampleJetStream(subject)
	defer closeJS()
	ctx := context.Background()
	p := natsjs.NewPublisher(js, streamName)
	m := outbox.Message{ID: outbox.NewID(), Subject: subject + ".placed", Payload: []byte("tea")}
	fmt.Println(p.Publish(ctx, m))
	fmt.Println(p.Publish(ctx, m))

	s, err := js.Stream(ctx, streamName)
	if err != nil {
		panic(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("on the stream:", info.State.Msgs, "duplicates:", p.Duplicates())
	// Output:
	// <nil>
	// <nil>
	// on the stream: 1 duplicates: 1
}

// EnsureStream gives a stream without a duplicate window JetStream's
// default, explicitly; set a longer one when the relay's lease and backoff
// call for it.
func ExampleEnsureStream() {
	subject := unique("example_window")
	js, streamName, closeJS := exampleJetStream(subject)
	defer closeJS()
	ctx := context.Background()
	s, err := natsjs.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:       streamName,
		Subjects:   []string{subject + ".>"},
		Storage:    jetstream.MemoryStorage,
		Duplicates: 5 * time.Minute, // > outbox.RelayConfig.Lease + BackoffMax, with room to spare
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("duplicate window:", s.CachedInfo().Config.Duplicates)
	// Output:
	// duplicate window: 5m0s
}
