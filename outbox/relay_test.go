package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

// No message is skipped: T1 records and stays open, T2 records (a higher
// id) and commits. The relay delivers T2's message; once T1 commits, it
// delivers T1's, although its id is lower than one already delivered. A
// relay reading "id > last delivered" would skip it for ever.
func TestLowerIDCommittedLaterIsDelivered(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rec := &recorder{}
	r := e.relay(t, rec.publisher("r"), outbox.RelayConfig{})

	ctx1, u1 := e.m.Begin(ctx)
	defer u1.Rollback()
	require.NoError(t, e.ob.Record(ctx1, outbox.Message{ID: "t1", Subject: "s"}))
	e.record(t, outbox.Message{ID: "t2", Subject: "s"})

	n, err := r.Deliver(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, []string{"t2"}, rec.ids())

	require.NoError(t, u1.Commit())
	n, err = r.Deliver(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, []string{"t2", "t1"}, rec.ids())
	var ids []string
	require.NoError(t, e.db.Select(&ids, `SELECT message_id FROM `+e.table+` ORDER BY id`))
	assert.Equal(t, []string{"t1", "t2"}, ids, "t1 has the lower id")
}

// A failed publish stops the round there: later messages are not published
// (they could be of the same key), the attempt is counted, and the next
// round starts again from the failed message.
func TestPublishFailureStopsRound(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 5 {
		e.record(t, outbox.Message{ID: fmt.Sprint("m", i), Subject: "s", Key: "k"})
	}
	rec := &recorder{}
	ok := rec.publisher("r")
	refused := errors.New("broker says no")
	var failing atomic.Bool
	failing.Store(true)
	pub := outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
		if m.ID == "m2" && failing.Load() {
			return refused
		}
		return ok.Publish(ctx, m)
	})
	var events []uow.Event
	r := e.relay(t, pub, outbox.RelayConfig{Observer: uow.ObserverFunc(func(_ context.Context, ev uow.Event) {
		events = append(events, ev)
	})})

	for attempt := 1; attempt <= 2; attempt++ {
		n, err := r.Deliver(ctx)
		require.ErrorIs(t, err, refused)
		var pe *outbox.PublishError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "m2", pe.ID)
		assert.Equal(t, attempt, pe.Attempts)
		assert.Equal(t, 2-2*(attempt-1), n)
		assert.Equal(t, []string{"m0", "m1"}, rec.ids(), "nothing after the failed message")
	}
	var attempts int
	var lastError string
	require.NoError(t, e.db.QueryRow(`SELECT attempts, last_error FROM `+e.table+` WHERE message_id = 'm2'`).Scan(&attempts, &lastError))
	assert.Equal(t, 2, attempts)
	assert.Contains(t, lastError, "broker says no")

	failing.Store(false)
	n, err := r.Deliver(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m4"}, rec.ids())

	require.Len(t, events, 3)
	assert.Equal(t, uow.EventRelay, events[0].Kind)
	assert.Equal(t, e.table, events[0].Source)
	assert.Equal(t, 2, events[0].Count)
	assert.Equal(t, 1, events[0].Failed)
	assert.ErrorIs(t, events[0].Err, refused)
	assert.Positive(t, events[0].Lag, "m2 is still waiting")
	assert.Equal(t, 3, events[2].Count)
	assert.Equal(t, 0, events[2].Failed)
	assert.NoError(t, events[2].Err)
	assert.Zero(t, events[2].Lag, "nothing left")
}

// Run backs off after a failure and retries until the publisher accepts.
func TestRunRetriesAfterFailure(t *testing.T) {
	e := newEnv(t)
	e.record(t, outbox.Message{ID: "a", Subject: "s"}, outbox.Message{ID: "b", Subject: "s"})
	rec := &recorder{}
	ok := rec.publisher("r")
	var failures atomic.Int32
	pub := outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
		if failures.Add(1) <= 3 {
			return errors.New("unavailable")
		}
		return ok.Publish(ctx, m)
	})
	run(t, e.relay(t, pub, outbox.RelayConfig{BackoffMin: time.Millisecond, BackoffMax: 4 * time.Millisecond}))
	eventually(t, "delivered", func() bool { return e.count(t, "delivered_at IS NULL") == 0 })
	assert.Equal(t, []string{"a", "b"}, rec.ids())
}

// A relay that does not hold the lease publishes nothing.
func TestStandbyDoesNotPublish(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.record(t, outbox.Message{ID: "a", Subject: "s"})
	rec := &recorder{}
	var events atomic.Int32
	obs := uow.ObserverFunc(func(context.Context, uow.Event) { events.Add(1) })
	holder := e.relay(t, rec.publisher("holder"), outbox.RelayConfig{Name: "holder", Lease: time.Hour})
	standby := e.relay(t, rec.publisher("standby"), outbox.RelayConfig{Name: "standby", Lease: time.Hour, Observer: obs})

	_, err := holder.Deliver(ctx)
	require.NoError(t, err)
	e.record(t, outbox.Message{ID: "b", Subject: "s"})
	n, err := standby.Deliver(ctx)
	require.ErrorIs(t, err, outbox.ErrNotHolder)
	assert.Zero(t, n)
	assert.Zero(t, events.Load(), "a standby's rounds are not reported")
	assert.Equal(t, []string{"a"}, rec.ids())
}

// Two relays run; the holder crashes mid-stream (its context ends and it
// leaves its lease behind). The other takes over once the lease expires and
// delivers everything. Two relays never publish at the same time: while the
// holder hangs in Publish, the other runs rounds and publishes nothing. Only
// the messages the crashed holder published but had not yet marked
// delivered are published twice.
func TestLeaseTakeoverAfterCrash(t *testing.T) {
	e := newEnv(t)
	const total = 150
	for i := range total / 10 {
		var msgs []outbox.Message
		for j := range 10 {
			msgs = append(msgs, outbox.Message{ID: fmt.Sprintf("m%03d", i*10+j), Subject: "s", Key: fmt.Sprint("k", j%3)})
		}
		e.record(t, msgs...)
	}

	var mu sync.Mutex
	var log []published
	var inFlight, overlaps atomic.Int32
	crash := make(chan string, 1)
	release := make(chan struct{})
	publisher := func(name string) outbox.Publisher {
		return outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
			if inFlight.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer inFlight.Add(-1)
			mu.Lock()
			log = append(log, published{name, m})
			n := len(log)
			mu.Unlock()
			if n == 40 { // mid-stream, mid-batch: hang until the process "dies"
				crash <- name
				select {
				case <-release:
				case <-ctx.Done():
				}
				return errors.New("crashed")
			}
			return nil
		})
	}
	relays := map[string]*outbox.Relay{}
	counts := map[string]*pgtest.Counts{}
	stops := map[string]func(){}
	for _, name := range []string{"a", "b"} {
		db, c := pgtest.OpenCounting(t, "outbox")
		r, err := outbox.NewRelay(db.DB, outbox.Postgres, publisher(name), outbox.RelayConfig{
			Table: e.table, Name: name, Batch: 25, Poll: 5 * time.Millisecond, Lease: 2 * time.Second})
		require.NoError(t, err)
		relays[name], counts[name] = r, c
		stops[name] = run(t, r)
	}
	victim := <-crash
	survivor := map[string]string{"a": "b", "b": "a"}[victim]
	// While the victim hangs, holding the lease, the survivor runs rounds.
	before := counts[survivor].Queries.Load()
	eventually(t, "survivor polling", func() bool { return counts[survivor].Queries.Load() >= before+3 })
	outbox.Abandon(relays[victim])
	stops[victim]() // its Run returns without releasing the lease
	close(release)
	eventually(t, "all delivered", func() bool { return e.count(t, "delivered_at IS NULL") == 0 })
	for _, stop := range stops {
		stop()
	}

	assert.Zero(t, overlaps.Load(), "two relays published at the same time")
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]int{}
	for i, p := range log {
		seen[p.m.ID]++
		want := victim
		if i >= 40 {
			want = survivor
		}
		require.Equal(t, want, p.by, "publication %d", i)
	}
	assert.Len(t, seen, total, "every message delivered")
	dups := 0
	for id, n := range seen {
		assert.LessOrEqual(t, n, 2, id)
		if n > 1 {
			dups++
		}
	}
	// The victim marks what the broker acknowledged in groups of at most
	// MarkEvery, and its 40th publication was never acknowledged: at most a
	// group's worth is published again, and at least that one.
	assert.LessOrEqual(t, dups, outbox.DefaultMarkEvery, "duplicates only around the takeover")
	assert.Positive(t, dups)
}

// A relay stopped gracefully releases its lease: another takes over at once,
// not when the (hour-long) lease would have expired.
func TestGracefulStopReleasesLease(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rec := &recorder{}
	first := e.relay(t, rec.publisher("first"), outbox.RelayConfig{Name: "first", Lease: time.Hour})
	second := e.relay(t, rec.publisher("second"), outbox.RelayConfig{Name: "second", Lease: time.Hour, Poll: 5 * time.Millisecond})
	e.record(t, outbox.Message{ID: "a", Subject: "s"})
	stop := run(t, first)
	eventually(t, "a delivered", func() bool { return rec.distinct() == 1 })
	stop()

	e.record(t, outbox.Message{ID: "b", Subject: "s"})
	run(t, second)
	eventually(t, "b delivered", func() bool { return rec.distinct() == 2 })
	got := rec.all()
	assert.Equal(t, "second", got[1].by)
	_, err := first.Deliver(ctx)
	assert.ErrorIs(t, err, outbox.ErrNotHolder)
}

// Release hands the lease over at once to an instance driven by Deliver.
func TestRelease(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rec := &recorder{}
	first := e.relay(t, rec.publisher("first"), outbox.RelayConfig{Lease: time.Hour})
	second := e.relay(t, rec.publisher("second"), outbox.RelayConfig{Lease: time.Hour})
	_, err := first.Deliver(ctx)
	require.NoError(t, err)
	_, err = second.Deliver(ctx)
	require.ErrorIs(t, err, outbox.ErrNotHolder)
	require.NoError(t, first.Release(ctx))
	require.NoError(t, first.Release(ctx), "not held: nothing to do")
	_, err = second.Deliver(ctx)
	require.NoError(t, err)
}

// Wake starts a round at once (Poll is an hour here), and a round that
// delivered a full batch is followed at once by the next.
func TestWakeAndFullBatches(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{}
	wake := make(chan struct{}, 1)
	r := e.relay(t, rec.publisher("r"), outbox.RelayConfig{Batch: 10, Poll: time.Hour, Lease: 3 * time.Hour, Wake: wake})
	run(t, r)
	eventually(t, "the lease taken", func() bool {
		var n int
		require.NoError(t, e.db.Get(&n, `SELECT count(*) FROM `+e.table+`_lease`))
		return n == 1
	})
	var msgs []outbox.Message
	for i := range 25 {
		msgs = append(msgs, outbox.Message{Subject: "s", Key: fmt.Sprint(i)})
	}
	e.record(t, msgs...)
	wake <- struct{}{}
	eventually(t, "all 25 delivered after one wake", func() bool { return rec.distinct() == 25 })
}

// Purge deletes delivered messages older than Retain, never undelivered
// ones; a negative Retain keeps everything.
func TestPurge(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rec := &recorder{}
	e.record(t, outbox.Message{Subject: "s"}, outbox.Message{Subject: "s"})
	r := e.relay(t, rec.publisher("r"), outbox.RelayConfig{Retain: time.Microsecond, Lease: time.Hour})
	_, err := r.Deliver(ctx)
	require.NoError(t, err)
	e.record(t, outbox.Message{ID: "pending", Subject: "s"})

	keep := e.relay(t, rec.publisher("keep"), outbox.RelayConfig{Retain: -1})
	n, err := keep.Purge(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)

	eventually(t, "retained for a microsecond", func() bool {
		n, err = r.Purge(ctx)
		require.NoError(t, err)
		return n > 0
	})
	assert.Equal(t, int64(2), n)
	assert.Equal(t, 1, e.count(t, "true"))
	assert.Equal(t, 1, e.count(t, "message_id = 'pending'"))
}

// Lag is the age of the oldest undelivered message, 0 when none is left.
func TestLag(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.relay(t, (&recorder{}).publisher("r"), outbox.RelayConfig{})
	lag, err := r.Lag(ctx)
	require.NoError(t, err)
	assert.Zero(t, lag)
	e.record(t, outbox.Message{Subject: "s"})
	lag, err = r.Lag(ctx)
	require.NoError(t, err)
	assert.Positive(t, lag)
	_, err = r.Deliver(ctx)
	require.NoError(t, err)
	lag, err = r.Lag(ctx)
	require.NoError(t, err)
	assert.Zero(t, lag)
}

// The trigger notifies the outbox's channel when a unit that recorded
// messages commits, so that a listening relay is woken without polling.
func TestCommitNotifies(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.URL(t, "outbox"))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `LISTEN `+e.table)
	require.NoError(t, err)

	e.record(t, outbox.Message{Subject: "s"}, outbox.Message{Subject: "s", Key: "k"})
	n, err := conn.WaitForNotification(ctx)
	require.NoError(t, err)
	assert.Equal(t, e.table, n.Channel)
}

func TestNewRelayConfig(t *testing.T) {
	e := newEnv(t)
	pub := (&recorder{}).publisher("r")
	for _, tt := range []struct {
		name string
		c    outbox.RelayConfig
		p    outbox.Publisher
		d    outbox.Dialect
		want error
	}{
		{"nil publisher", outbox.RelayConfig{}, nil, outbox.Postgres, outbox.ErrInvalidConfig},
		{"bad dialect", outbox.RelayConfig{}, pub, 0, outbox.ErrInvalidConfig},
		{"negative batch", outbox.RelayConfig{Batch: -1}, pub, outbox.Postgres, outbox.ErrInvalidConfig},
		{"injection", outbox.RelayConfig{Table: "t; DROP TABLE x"}, pub, outbox.Postgres, outbox.ErrInvalidName},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := outbox.NewRelay(e.db.DB, tt.d, tt.p, tt.c)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	r := e.relay(t, pub, outbox.RelayConfig{})
	assert.NotEmpty(t, r.Name())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	eventually(t, "running", func() bool {
		var n int
		require.NoError(t, e.db.Get(&n, `SELECT count(*) FROM `+e.table+`_lease`))
		return n == 1
	})
	assert.ErrorIs(t, r.Run(ctx), outbox.ErrRunning)
	cancel()
	assert.NoError(t, <-done)
}
