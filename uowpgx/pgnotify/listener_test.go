package pgnotify_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx/pgnotify"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// signalled waits up to 30 s for a signal on c.
func signalled(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("no signal for %s after 30 s", what)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 30 s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// start runs l until the test ends.
func start(t *testing.T, l *pgnotify.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
}

// The listener signals once connected, on every notification, and again
// after its connection is terminated and it has reconnected; notifications
// after the reconnection still arrive.
func TestListenerReconnects(t *testing.T) {
	db := pgtest.Open(t, "pgnotify")
	app := unique("pgnotify_test_")
	channel := unique("chan_")
	var mu sync.Mutex
	var errs []error
	l, err := pgnotify.New(pgtest.URL(t, "pgnotify")+"&application_name="+app, channel, pgnotify.Config{
		BackoffMin: time.Millisecond,
		OnError: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
		},
	})
	require.NoError(t, err)
	start(t, l)

	signalled(t, l.C(), "the first connection")
	eventually(t, "connected", func() bool { return l.Connects() == 1 })
	db.MustExec(`SELECT pg_notify($1, '')`, channel)
	signalled(t, l.C(), "a notification")

	var pid int
	require.NoError(t, db.Get(&pid, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app))
	var ok bool
	require.NoError(t, db.Get(&ok, `SELECT pg_terminate_backend($1)`, pid))
	require.True(t, ok)
	eventually(t, "reconnected", func() bool { return l.Connects() == 2 })
	signalled(t, l.C(), "the reconnection") // sent before Connects counted it
	var again int
	require.NoError(t, db.Get(&again, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app))
	assert.NotEqual(t, pid, again, "a new backend")

	db.MustExec(`SELECT pg_notify($1, '')`, channel)
	signalled(t, l.C(), "a notification after the reconnection")
	mu.Lock()
	defer mu.Unlock()
	assert.NotEmpty(t, errs, "the dropped connection was reported")
}

// End to end: a relay that polls once an hour, woken by the listener,
// publishes a message as soon as its unit commits.
func TestRelayWokenByCommit(t *testing.T) {
	db := pgtest.Open(t, "pgnotify")
	table := unique("outbox_")
	ctx := context.Background()
	require.NoError(t, outbox.CreateSchema(ctx, db, outbox.Postgres, table))
	t.Cleanup(func() {
		db.MustExec(`DROP TABLE ` + table + `, ` + table + `_keys, ` + table + `_lease`)
		db.MustExec(`DROP FUNCTION ` + table + `_notify()`)
	})
	l, err := pgnotify.New(pgtest.URL(t, "pgnotify"), table, pgnotify.Config{})
	require.NoError(t, err)
	start(t, l)
	eventually(t, "listening", func() bool { return l.Connects() == 1 })

	published := make(chan outbox.Message, 1)
	relay, err := outbox.NewRelay(db.DB, outbox.Postgres, outbox.PublisherFunc(func(_ context.Context, m outbox.Message) error {
		published <- m
		return nil
	}), outbox.RelayConfig{Table: table, Poll: time.Hour, Lease: 3 * time.Hour, Wake: l.C()})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })
	eventually(t, "the relay holding its lease", func() bool {
		var n int
		require.NoError(t, db.Get(&n, `SELECT count(*) FROM `+table+`_lease`))
		return n == 1
	})

	ob, err := outbox.New(db, outbox.Postgres, table)
	require.NoError(t, err)
	m := uow.New(db)
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		return ob.Record(ctx, outbox.Message{ID: "woken", Subject: "s"})
	}))
	select {
	case got := <-published:
		assert.Equal(t, "woken", got.ID)
	case <-time.After(30 * time.Second):
		t.Fatal("not published 30 s after the commit")
	}
}

func TestNewRejects(t *testing.T) {
	_, err := pgnotify.New("postgres://x", "", pgnotify.Config{})
	assert.Error(t, err)
	_, err = pgnotify.New("::not a url", "c", pgnotify.Config{})
	assert.Error(t, err)
	_, err = pgnotify.New("postgres://x", "c", pgnotify.Config{Ping: -1})
	assert.Error(t, err)
}
