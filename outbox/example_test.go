package outbox_test

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

// exampleDB opens the examples' database with a fresh outbox and inbox
// named after table, and an orders table.
func exampleDB(table string) *sqlx.DB {
	db := pgtest.ExampleDB("outbox_examples")
	db.MustExec(`DROP TABLE IF EXISTS ` + table + `, ` + table + `_keys, ` + table + `_lease, ` + table + `_inbox, orders_` + table)
	ctx := context.Background()
	if err := outbox.CreateSchema(ctx, db, outbox.Postgres, table); err != nil {
		panic(err)
	}
	if err := outbox.CreateInboxSchema(ctx, db, outbox.Postgres, table+"_inbox"); err != nil {
		panic(err)
	}
	db.MustExec(`CREATE TABLE orders_` + table + ` (id bigserial PRIMARY KEY, item text NOT NULL)`)
	return db
}

// Record writes the message in the unit of work, with the order it
// announces; the relay publishes it once the unit has committed. A unit
// that rolls back leaves nothing to publish.
func ExampleOutbox_Record() {
	db := exampleDB("ex_record")
	defer db.Close()
	m := uow.New(db)
	ob, err := outbox.New(db, outbox.Postgres, "ex_record")
	if err != nil {
		panic(err)
	}
	placeOrder := func(ctx context.Context, item string, fail bool) error {
		return m.Do(ctx, func(ctx context.Context) error {
			if _, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `INSERT INTO orders_ex_record (item) VALUES ($1)`, item); err != nil {
				return err
			}
			if err := ob.Record(ctx, outbox.Message{Subject: "orders.placed", Key: "customer-7", Payload: []byte(item)}); err != nil {
				return err
			}
			if fail {
				return fmt.Errorf("out of stock: %s", item)
			}
			return nil
		})
	}
	ctx := context.Background()
	fmt.Println(placeOrder(ctx, "tea", false))
	fmt.Println(placeOrder(ctx, "caviar", true))
	fmt.Println(placeOrder(ctx, "coffee", false))

	broker := outbox.PublisherFunc(func(_ context.Context, m outbox.Message) error {
		fmt.Printf("published %s %s %s\n", m.Subject, m.Key, m.Payload)
		return nil // the broker acknowledged it
	})
	relay, err := outbox.NewRelay(db.DB, outbox.Postgres, broker, outbox.RelayConfig{Table: "ex_record"})
	if err != nil {
		panic(err)
	}
	n, err := relay.Deliver(ctx)
	fmt.Println("delivered:", n, err)
	// Output:
	// <nil>
	// out of stock: caviar
	// <nil>
	// published orders.placed customer-7 tea
	// published orders.placed customer-7 coffee
	// delivered: 2 <nil>
}

// Run relays until its context ends; with several instances, one publishes
// at a time. Wake (fed by package uowpgx/pgnotify) makes it relay at commit
// instead of at the next poll.
func ExampleRelay_Run() {
	db := exampleDB("ex_run")
	defer db.Close()
	m := uow.New(db)
	ob, _ := outbox.New(db, outbox.Postgres, "ex_run")
	ctx, stop := context.WithCancel(context.Background())
	published := make(chan outbox.Message)
	relay, err := outbox.NewRelay(db.DB, outbox.Postgres, outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
		select {
		case published <- m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}), outbox.RelayConfig{Table: "ex_run"})
	if err != nil {
		panic(err)
	}
	done := make(chan error)
	go func() { done <- relay.Run(ctx) }()

	_ = m.Do(ctx, func(ctx context.Context) error {
		return ob.Record(ctx, outbox.Message{ID: "welcome-1", Subject: "users.welcome"})
	})
	got := <-published
	fmt.Println(got.ID, got.Subject)
	stop()
	fmt.Println(<-done)
	// Output:
	// welcome-1 users.welcome
	// <nil>
}

// Handle applies a message once however often the broker delivers it: the
// inbox record and the consumer's changes commit together.
func ExampleInbox_Handle() {
	db := exampleDB("ex_inbox")
	defer db.Close()
	m := uow.New(db)
	in, err := outbox.NewInbox(db, outbox.Postgres, outbox.InboxConfig{Table: "ex_inbox_inbox"})
	if err != nil {
		panic(err)
	}
	project := func(ctx context.Context) error {
		_, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `INSERT INTO orders_ex_inbox (item) VALUES ('projected')`)
		return err
	}
	for range 3 { // the broker redelivers
		applied, err := in.Handle(context.Background(), m, "msg-42", project)
		fmt.Println(applied, err) // ack the message when err is nil
	}
	var n int
	_ = db.Get(&n, `SELECT count(*) FROM orders_ex_inbox`)
	fmt.Println("rows:", n)
	// Output:
	// true <nil>
	// false <nil>
	// false <nil>
	// rows: 1
}
