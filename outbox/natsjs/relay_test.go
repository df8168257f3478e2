package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/outbox/natsjs"
	"github.com/uowkit/uowkit/uow"
)

// dbTag is the package's database (pgtest.Open, pgtest.URL); each test
// has tables of its own in it.
const dbTag = "natsjs"

var tableSeq atomic.Int64

// env is one test's outbox: a table of its own in the package's database.
type env struct {
	db    *sqlx.DB
	m     *uow.Manager
	table string
	ob    *outbox.Outbox
}

// newEnv creates an outbox, an inbox (<table>_inbox) and a projection
// table (<table>_proj) of the test's own, dropped at its end.
func newEnv(t testing.TB) *env {
	t.Helper()
	db := pgtest.Open(t, dbTag)
	table := fmt.Sprintf("nj%d_%d", os.Getpid(), tableSeq.Add(1))
	ctx := context.Background()
	require.NoError(t, outbox.CreateSchema(ctx, db, outbox.Postgres, table))
	require.NoError(t, outbox.CreateInboxSchema(ctx, db, outbox.Postgres, table+"_inbox"))
	db.MustExec(`CREATE TABLE ` + table + `_proj (message_id text PRIMARY KEY, applied integer NOT NULL)`)
	t.Cleanup(func() {
		db.MustExec(`DROP TABLE IF EXISTS ` + table + `, ` + table + `_keys, ` + table + `_lease, ` +
			table + `_inbox, ` + table + `_proj`)
		db.MustExec(`DROP FUNCTION IF EXISTS ` + table + `_notify()`)
	})
	ob, err := outbox.New(db, outbox.Postgres, table)
	require.NoError(t, err)
	return &env{db: db, m: uow.New(db), table: table, ob: ob}
}

// record commits msgs in units of per messages each, and returns them
// with their ids.
func (e *env) record(t testing.TB, subject string, n, per int) []outbox.Message {
	t.Helper()
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{ID: fmt.Sprintf("%s-%05d", e.table, i), Subject: subject, Payload: []byte(strconv.Itoa(i))}
	}
	for i := 0; i < n; i += per {
		batch := msgs[i:min(i+per, n)]
		require.NoError(t, e.m.Do(context.Background(), func(ctx context.Context) error { return e.ob.Record(ctx, batch...) }))
	}
	return msgs
}

func (e *env) count(t testing.TB, where string) int {
	t.Helper()
	var n int
	require.NoError(t, e.db.Get(&n, `SELECT count(*) FROM `+e.table+` WHERE `+where))
	return n
}

// relayConfig is what the tests' relays run with: a short lease, so that a
// crashed holder is replaced within seconds, and quick polling.
func (e *env) relayConfig() outbox.RelayConfig {
	return outbox.RelayConfig{Table: e.table, Lease: 2 * time.Second, Poll: 50 * time.Millisecond, BackoffMax: time.Second}
}

// drain runs r until every committed message is delivered (or fails the
// test after a minute).
func (e *env) drain(t testing.TB, r *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for e.count(t, "delivered_at IS NULL") > 0 {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("%d messages still undelivered after a minute", e.count(t, "delivered_at IS NULL"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)
}

// A unit that rolls back publishes nothing; one that commits publishes
// exactly its messages, each once.
func TestRelayPublishesCommittedOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	js := connect(t)
	name, subject := stream(t, js, 0)
	ctx := context.Background()

	errBusiness := errors.New("order refused")
	err := e.m.Do(ctx, func(ctx context.Context) error {
		if err := e.ob.Record(ctx, outbox.Message{ID: "rolled-back-1", Subject: subject + ".order"}, outbox.Message{ID: "rolled-back-2", Subject: subject + ".order"}); err != nil {
			return err
		}
		return errBusiness
	})
	require.ErrorIs(t, err, errBusiness)
	committed := []outbox.Message{
		{ID: "committed-1", Subject: subject + ".order", Key: "o-1", Payload: []byte("a"), Headers: map[string]string{"h": "1"}},
		{ID: "committed-2", Subject: subject + ".order", Key: "o-1", Payload: []byte("b")},
		{ID: "committed-3", Subject: subject + ".invoice", Payload: []byte("c")},
	}
	require.NoError(t, e.m.Do(ctx, func(ctx context.Context) error { return e.ob.Record(ctx, committed...) }))

	p := natsjs.NewPublisher(js, name)
	r, err := outbox.NewRelay(e.db.DB, outbox.Postgres, p, e.relayConfig())
	require.NoError(t, err)
	n, err := r.Deliver(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	n, err = r.Deliver(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left")

	total, ids := streamIDs(t, js, name)
	assert.Equal(t, 3, total)
	assert.Equal(t, map[string]int{"committed-1": 1, "committed-2": 1, "committed-3": 1}, ids)
	assert.Zero(t, p.Duplicates())

	// What the stream holds is what was recorded, in commit order.
	s, err := js.Stream(ctx, name)
	require.NoError(t, err)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	for i, want := range committed {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		got, err := natsjs.Decode(msg)
		require.NoError(t, err)
		assert.Equal(t, want.ID, got.ID, "#%d", i)
		assert.Equal(t, want.Subject, got.Subject)
		assert.Equal(t, want.Key, got.Key)
		assert.Equal(t, want.Payload, got.Payload)
		assert.Equal(t, want.Headers, got.Headers)
		assert.False(t, got.RecordedAt.IsZero())
	}
}

// The relay child process: TestRelayChild runs a relay whose publisher
// SIGKILLs the process right after the PubAck of its killAfter-th message,
// before the relay can mark it delivered: a crash at the worst moment.
const (
	envChild          = "NATSJS_RELAY_CHILD"
	envChildURL       = "NATSJS_RELAY_CHILD_DB"
	envChildTable     = "NATSJS_RELAY_CHILD_TABLE"
	envChildStream    = "NATSJS_RELAY_CHILD_STREAM"
	envChildKillAfter = "NATSJS_RELAY_CHILD_KILL_AFTER"
)

// TestRelayChild is not a test: it is the body of the child process that
// startRelayChild starts, and skips in a normal run.
func TestRelayChild(t *testing.T) {
	if os.Getenv(envChild) != "1" {
		t.Skip("the relay child process, run by TestRelayKilledBetweenPublishAndMark")
	}
	killAfter, err := strconv.Atoi(os.Getenv(envChildKillAfter))
	require.NoError(t, err)
	db, err := sqlx.Open("postgres", os.Getenv(envChildURL))
	require.NoError(t, err)
	defer db.Close()
	js := connect(t)
	p := natsjs.NewPublisher(js, os.Getenv(envChildStream))
	var acked int
	kill := outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
		if err := p.Publish(ctx, m); err != nil {
			return err
		}
		if acked++; acked == killAfter {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way; never return to the relay
		}
		return nil
	})
	e := &env{table: os.Getenv(envChildTable)}
	r, err := outbox.NewRelay(db.DB, outbox.Postgres, kill, e.relayConfig())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = r.Run(ctx)
	t.Fatal("the relay child was not killed")
}

// startRelayChild starts the relay child process on e's outbox and stream.
// wait waits for it to end and fails the test unless SIGKILL ended it.
func startRelayChild(t *testing.T, e *env, streamName string, killAfter int) (wait func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRelayChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(),
		envChild+"=1",
		envChildURL+"="+pgtest.URL(t, dbTag),
		envChildTable+"="+e.table,
		envChildStream+"="+streamName,
		envChildKillAfter+"="+strconv.Itoa(killAfter),
		envNATS+"="+natsURL(),
	)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	var once sync.Once
	wait = func() {
		once.Do(func() {
			defer cancel()
			err := cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("relay child: %v\n%s", err, out.String())
			}
			ws, ok := exit.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("relay child was not killed by SIGKILL (%v):\n%s", err, out.String())
			}
		})
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return wait
}

// A relay killed between the PubAck and its mark leaves acknowledged
// messages undelivered in the outbox; the relay that takes over publishes
// them again, and the stream's duplicate window drops the copies: every
// committed message is on the stream once, and every one is delivered.
func TestRelayKilledBetweenPublishAndMark(t *testing.T) {
	t.Parallel()
	for _, killAfter := range []int{1, 45} { // the very first ack; one after a mark of 32
		t.Run(fmt.Sprintf("killed after ack %d", killAfter), func(t *testing.T) {
			t.Parallel()
			const committed = 100
			e := newEnv(t)
			js := connect(t)
			name, subject := stream(t, js, time.Minute)
			e.record(t, subject+".order", committed, 10)

			startRelayChild(t, e, name, killAfter)()
			total, _ := streamIDs(t, js, name)
			require.Equal(t, killAfter, total, "the child published exactly its messages before dying")
			marked := e.count(t, "delivered_at IS NOT NULL")
			require.Less(t, marked, killAfter, "the kill left an acknowledged message unmarked")

			p := natsjs.NewPublisher(js, name)
			r, err := outbox.NewRelay(e.db.DB, outbox.Postgres, p, e.relayConfig())
			require.NoError(t, err)
			e.drain(t, r)

			total, ids := streamIDs(t, js, name)
			assert.Equal(t, committed, total, "stream messages")
			assert.Len(t, ids, committed)
			for id, n := range ids {
				assert.Equal(t, 1, n, "message %s on the stream %d times", id, n)
			}
			assert.Equal(t, committed, e.count(t, "delivered_at IS NOT NULL"), "delivered in the outbox")
			assert.Equal(t, int64(killAfter-marked), p.Duplicates(), "the republished unmarked messages were acknowledged as duplicates")
		})
	}
}

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// Three relays over 10,000 committed messages, each with a pool and a NATS
// connection of its own: a child process that takes the lease first and is
// SIGKILLed after 3,000 acknowledgements, and two relays in this process
// that run from the start, waiting for the lease; whichever of them
// publishes the 3,000th message in this process is then stopped, and the
// other takes over. Every message reaches the stream once, and the
// republished ones are exactly the duplicates the stream acknowledged.
func TestRelaysTakeOverUnderLoad(t *testing.T) {
	t.Parallel()
	const committed, childAcks, stopAt = 10000, 3000, 3000
	e := newEnv(t)
	js := connect(t)
	name, subject := stream(t, js, 2*time.Minute)
	e.record(t, subject+".order", committed, 100)

	waitChild := startRelayChild(t, e, name, childAcks)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			waitChild()
			t.Fatal("the child published nothing")
		}
		if s, err := js.Stream(context.Background(), name); err == nil && s.CachedInfo().State.Msgs > 0 {
			break
		}
	}

	type instance struct {
		pub       *natsjs.Publisher
		published atomic.Int64
		stopped   atomic.Bool
		cancel    context.CancelFunc
		done      chan error
	}
	var parentAcks atomic.Int64
	instances := make([]*instance, 2)
	for i := range instances {
		in := &instance{pub: natsjs.NewPublisher(connect(t), name), done: make(chan error, 1)}
		instances[i] = in
		ctx, cancel := context.WithCancel(context.Background())
		in.cancel = cancel
		p := outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
			if err := in.pub.Publish(ctx, m); err != nil {
				return err
			}
			in.published.Add(1)
			if parentAcks.Add(1) == stopAt {
				in.stopped.Store(true)
				cancel() // this relay stops here; the other takes over
			}
			return nil
		})
		c := e.relayConfig()
		c.Name = fmt.Sprintf("parent-%d", i)
		r, err := outbox.NewRelay(pgtest.Open(t, dbTag).DB, outbox.Postgres, p, c)
		require.NoError(t, err)
		go func() { in.done <- r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-in.done })
	}

	waitChild()
	for deadline := time.Now().Add(2 * time.Minute); e.count(t, "delivered_at IS NULL") > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still undelivered", e.count(t, "delivered_at IS NULL"))
		}
	}
	var republished, dups int64
	for i, in := range instances {
		in.cancel()
		require.NoError(t, <-in.done)
		in.done <- nil // for the cleanup
		assert.Positive(t, in.published.Load(), "relay %d never published: no takeover", i)
		republished += in.published.Load()
		dups += in.pub.Duplicates()
	}
	assert.True(t, instances[0].stopped.Load() || instances[1].stopped.Load(), "no relay was stopped mid-way")

	total, ids := streamIDs(t, js, name)
	assert.Equal(t, committed, total, "stream messages")
	assert.Len(t, ids, committed)
	for id, n := range ids {
		if n != 1 {
			t.Errorf("message %s on the stream %d times", id, n)
		}
	}
	assert.Equal(t, committed, e.count(t, "delivered_at IS NOT NULL"), "delivered in the outbox")
	// Every publish that did not add a message was a duplicate the stream
	// acknowledged: the child's unmarked messages, published again.
	assert.Equal(t, childAcks+republished-committed, dups)
	assert.Positive(t, dups, "the child's crash left no acknowledged message unmarked")
	t.Logf("child published %d, this process %d, duplicates dropped by the stream: %d", childAcks, republished, dups)
}
