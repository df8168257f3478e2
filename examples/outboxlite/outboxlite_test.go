package outboxlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open returns a database file of the test's own with the outbox, the inbox
// and an orders table.
func open(t *testing.T) *sqlx.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	db := sqlx.MustOpen("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	t.Cleanup(func() {
		assert.Zero(t, db.Stats().InUse, "connections still in use")
		db.Close()
	})
	ctx := context.Background()
	require.NoError(t, outbox.CreateSchema(ctx, db, outbox.SQLite, ""))
	require.NoError(t, outbox.CreateInboxSchema(ctx, db, outbox.SQLite, ""))
	db.MustExec(`CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)`)
	return db
}

type recorder struct {
	mu  sync.Mutex
	got []outbox.Message
}

func (r *recorder) Publish(_ context.Context, m outbox.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, m)
	return nil
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, m := range r.got {
		ids = append(ids, m.ID)
	}
	return ids
}

// Messages commit with the unit's other work or not at all; the relay
// publishes the committed ones in order, with what Record was given, and
// marks them delivered; a second relay instance is kept out by the lease.
func TestWriteAndRelay(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	m := uow.New(db)
	ob, err := outbox.New(db, outbox.SQLite, "")
	require.NoError(t, err)
	order := func(ctx context.Context, item string, msgs ...outbox.Message) error {
		if _, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `INSERT INTO orders (item) VALUES (?)`, item); err != nil {
			return err
		}
		return ob.Record(ctx, msgs...)
	}

	require.ErrorIs(t, ob.Record(ctx, outbox.Message{Subject: "s"}), uow.ErrNoUnit)
	boom := errors.New("boom")
	require.ErrorIs(t, m.Do(ctx, func(ctx context.Context) error {
		if err := order(ctx, "lost", outbox.Message{ID: "rolled-back", Subject: "orders"}); err != nil {
			return err
		}
		return boom
	}), boom)
	for i := range 3 {
		require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
			return order(ctx, "kept", outbox.Message{ID: fmt.Sprint("m", i), Subject: "orders", Key: "customer-1",
				Payload: []byte{byte(i)}, Headers: map[string]string{"n": fmt.Sprint(i)}})
		}))
	}

	rec := &recorder{}
	relay, err := outbox.NewRelay(db.DB, outbox.SQLite, rec, outbox.RelayConfig{Name: "one", Lease: time.Hour, Retain: time.Microsecond})
	require.NoError(t, err)
	other, err := outbox.NewRelay(db.DB, outbox.SQLite, rec, outbox.RelayConfig{Name: "two"})
	require.NoError(t, err)
	n, err := relay.Deliver(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	_, err = other.Deliver(ctx)
	assert.ErrorIs(t, err, outbox.ErrNotHolder)

	assert.Equal(t, []string{"m0", "m1", "m2"}, rec.ids())
	for i, got := range rec.got {
		assert.Equal(t, "customer-1", got.Key)
		assert.Equal(t, []byte{byte(i)}, got.Payload)
		assert.Equal(t, map[string]string{"n": fmt.Sprint(i)}, got.Headers)
		assert.WithinDuration(t, time.Now(), got.RecordedAt, time.Hour, "the database's clock, in microseconds")
	}
	var seqs []int64
	require.NoError(t, db.Select(&seqs, `SELECT key_seq FROM uowkit_outbox ORDER BY id`))
	assert.Equal(t, []int64{1, 2, 3}, seqs)
	lag, err := relay.Lag(ctx)
	require.NoError(t, err)
	assert.Zero(t, lag)

	var purged int64
	require.Eventually(t, func() bool {
		n, err := relay.Purge(ctx)
		purged += n
		return err == nil && purged == 3
	}, 10*time.Second, time.Millisecond)
}

// Run delivers what commits while it runs, woken by the application.
func TestRun(t *testing.T) {
	db := open(t)
	m := uow.New(db)
	ob, err := outbox.New(db, outbox.SQLite, "")
	require.NoError(t, err)
	rec := &recorder{}
	wake := make(chan struct{}, 1)
	relay, err := outbox.NewRelay(db.DB, outbox.SQLite, rec, outbox.RelayConfig{Batch: 4, Poll: 10 * time.Millisecond, Wake: wake})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	for i := range 10 {
		require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
			return ob.Record(ctx, outbox.Message{ID: fmt.Sprint(i), Subject: "s", Key: "k"})
		}))
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	require.Eventually(t, func() bool { return len(rec.ids()) == 10 }, 30*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, rec.ids())
}

// The inbox applies a message once, and not at all when the handler fails.
func TestInbox(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	m := uow.New(db)
	in, err := outbox.NewInbox(db, outbox.SQLite, outbox.InboxConfig{})
	require.NoError(t, err)
	apply := func(ctx context.Context) error {
		_, err := uow.FromContext(ctx).On(db).ExecContext(ctx, `INSERT INTO orders (item) VALUES ('applied')`)
		return err
	}
	boom := errors.New("boom")
	applied, err := in.Handle(ctx, m, "m1", func(ctx context.Context) error {
		if err := apply(ctx); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.False(t, applied)
	for _, want := range []bool{true, false} {
		applied, err = in.Handle(ctx, m, "m1", apply)
		require.NoError(t, err)
		assert.Equal(t, want, applied)
	}
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM orders`))
	assert.Equal(t, 1, n)
}
