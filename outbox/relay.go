package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uowkit/uowkit/uow"
)

// Defaults of RelayConfig.
const (
	DefaultBatch      = 100
	DefaultPoll       = time.Second
	DefaultLease      = 10 * time.Second
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
	DefaultRetain     = 24 * time.Hour
)

// DefaultMarkEvery is RelayConfig.MarkEvery's default.
const DefaultMarkEvery = 32

// purgeBatch is how many delivered rows one purge statement deletes.
const purgeBatch = 1000

// RelayConfig configures a Relay. Zero values mean the defaults.
type RelayConfig struct {
	// Table is the outbox table (default DefaultTable).
	Table string
	// Name identifies this relay instance in the lease table (default:
	// host name, process id and a random suffix). Two instances must not
	// share a name.
	Name string
	// Batch is how many messages a round reads at most (default 100). After
	// a round that delivered a full batch the next one starts at once.
	Batch int
	// Poll is how long a relay waits between rounds when nothing wakes it
	// (default 1s): the fallback when notifications are lost or absent, and
	// how often a standby instance checks the lease.
	Poll time.Duration
	// Lease is how long a relay holds the lease without renewing it
	// (default 10s): how long a crashed holder blocks its successors. The
	// holder renews it when a third of it has passed, and cancels a Publish
	// still running when it runs out.
	Lease time.Duration
	// MarkEvery is how many acknowledged messages the relay marks delivered
	// in one UPDATE (default 32; at most Batch; the rest of a round is
	// marked at its end): a larger group costs fewer commits, and is how
	// many messages a crash may make it publish twice.
	MarkEvery int
	// BackoffMin and BackoffMax bound the wait after a failed round (a
	// publisher or database failure), doubling from BackoffMin up to
	// BackoffMax with a little jitter (defaults 100ms and 10s).
	BackoffMin, BackoffMax time.Duration
	// Retain is how long delivered messages are kept before the relay
	// deletes them (default 24h: long enough to look at what was published
	// yesterday). Negative keeps them forever.
	Retain time.Duration
	// Wake, when set, starts a round at once when it receives: feed it from
	// a LISTEN on the outbox's channel (package uowpgx/pgnotify does), so
	// that messages are relayed as soon as their unit commits instead of at
	// the next poll.
	Wake <-chan struct{}
	// Observer, when set, is told of every round the lease holder runs as a
	// uow.EventRelay (Count delivered, Failed, Lag, Err).
	Observer uow.Observer
}

// Relay publishes the committed messages of an outbox, in id order, and
// marks them delivered once the publisher has acknowledged them. Several
// instances may run against one outbox: a lease in the database lets one
// publish at a time, and another takes over when the holder stops renewing
// it. A Relay is safe for concurrent use; its rounds run one at a time.
type Relay struct {
	db  *sql.DB
	q   *queries
	pub Publisher
	c   RelayConfig

	running atomic.Bool

	mu         sync.Mutex // serialises rounds; guards what follows
	leaseUntil time.Time  // by this process's clock; zero when not held
	renewedAt  time.Time
	lastPurge  time.Time
	abandon    bool // tests: stop without releasing the lease, as a crash would
}

// NewRelay returns a relay publishing the outbox of db, in dialect d, to p.
// The relay runs statements of its own on db (short autocommit statements,
// not units of work). It fails with [ErrInvalidConfig] or [ErrInvalidName]
// on a bad configuration.
func NewRelay(db *sql.DB, d Dialect, p Publisher, c RelayConfig) (*Relay, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	switch {
	case db == nil:
		return nil, fmt.Errorf("%w: nil database", ErrInvalidConfig)
	case p == nil:
		return nil, fmt.Errorf("%w: nil publisher", ErrInvalidConfig)
	case c.Batch < 0, c.MarkEvery < 0, c.Poll < 0, c.Lease < 0, c.BackoffMin < 0, c.BackoffMax < 0:
		return nil, fmt.Errorf("%w: negative Batch, MarkEvery, Poll, Lease or Backoff", ErrInvalidConfig)
	case len(c.Name) > 200:
		return nil, fmt.Errorf("%w: Name longer than 200 bytes", ErrInvalidConfig)
	}
	t, err := tableName(c.Table, DefaultTable)
	if err != nil {
		return nil, err
	}
	c.Table = t
	if c.Name == "" {
		c.Name = instanceName()
	}
	setDefault(&c.Batch, DefaultBatch)
	setDefault(&c.MarkEvery, DefaultMarkEvery)
	c.MarkEvery = min(c.MarkEvery, c.Batch)
	setDefault(&c.Poll, DefaultPoll)
	setDefault(&c.Lease, DefaultLease)
	setDefault(&c.BackoffMin, DefaultBackoffMin)
	setDefault(&c.BackoffMax, DefaultBackoffMax)
	setDefault(&c.Retain, DefaultRetain)
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	return &Relay{db: db, q: newQueries(d, t), pub: p, c: c}, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

func instanceName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// Name returns the relay instance's name, as the lease table shows it.
func (r *Relay) Name() string { return r.c.Name }

// Run relays until ctx is done, then releases the lease, so that another
// instance takes over at once, and returns nil. Between rounds it waits for
// Wake or the Poll interval; after a round that delivered a full batch it
// starts the next at once; after a failed round it backs off. Failures are
// reported to the Observer and retried, never returned. Run returns
// [ErrRunning] if the relay is already running.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	defer func() { _ = r.Release(ctx) }()
	failures := 0
	for {
		n, err := r.round(ctx, true)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		var wake <-chan struct{}
		switch {
		case errors.Is(err, ErrNotHolder):
			failures = 0
			wait = r.c.Poll
		case err != nil:
			failures++
			wait = r.backoff(failures)
		case n >= r.c.Batch:
			failures = 0
			continue
		default:
			failures = 0
			wait = min(r.c.Poll, r.c.Lease/3) // renew the lease in time
			wake = r.c.Wake
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-wake:
			t.Stop()
		}
	}
}

// backoff returns the wait after the n-th failed round in a row.
func (r *Relay) backoff(n int) time.Duration {
	d := r.c.BackoffMin
	for i := 1; i < n && d < r.c.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.c.BackoffMax)
	jitter := time.Duration(mrand.Int64N(int64(d)/5 + 1)) // up to +20%
	return d + jitter
}

// Deliver runs one round: it takes or renews the lease (returning
// [ErrNotHolder] when another instance holds it), publishes up to Batch
// undelivered messages in id order, marking them delivered as the
// publisher acknowledges them, and stops at the first failure, which it
// returns as a [*PublishError] after counting the attempt on the message.
// It returns how many messages were delivered. Run calls it in a loop;
// call it directly to relay from a scheduled job, and [Relay.Release] the
// lease when done.
func (r *Relay) Deliver(ctx context.Context) (int, error) {
	return r.round(ctx, false)
}

func (r *Relay) round(ctx context.Context, purge bool) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.hold(ctx)
	if errors.Is(err, ErrNotHolder) {
		return 0, err // a standby instance: nothing to report
	}
	e := uow.Event{Kind: uow.EventRelay, Source: r.q.table}
	var start time.Time
	if r.c.Observer != nil {
		ctx = r.c.Observer.Start(ctx, e)
		start = time.Now()
	}
	if err == nil {
		e.Count, e.Failed, err = r.deliver(ctx)
	}
	if err == nil && purge {
		err = r.purgeDue(ctx)
	}
	if r.c.Observer != nil && ctx.Err() == nil && (err == nil || e.Failed > 0) {
		var lerr error
		e.Lag, lerr = r.Lag(ctx)
		err = errors.Join(err, lerr)
	}
	if r.c.Observer != nil {
		e.Err = err
		e.Duration = time.Since(start)
		r.c.Observer.End(ctx, e)
	}
	return e.Count, err
}

// hold takes the lease or renews it once a third of it has passed. It
// returns ErrNotHolder when another instance holds it. An error leaves the
// lease not held, as far as this relay knows: it publishes nothing until it
// takes it again.
func (r *Relay) hold(ctx context.Context) error {
	now := time.Now()
	if !r.leaseUntil.IsZero() && now.Before(r.renewedAt.Add(r.c.Lease/3)) {
		return nil
	}
	r.leaseUntil = time.Time{}
	var holder string
	err := r.db.QueryRowContext(ctx, r.q.lease, r.q.table, r.c.Name, r.c.Lease.Microseconds()).Scan(&holder)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotHolder
	case err != nil:
		return fmt.Errorf("outbox: lease: %w", err)
	}
	// The database set expires_at to its clock at the statement plus Lease,
	// and its clock read the statement after now: counting from now, by
	// this process's clock, never overestimates the lease.
	r.renewedAt, r.leaseUntil = now, now.Add(r.c.Lease)
	return nil
}

// Release gives the lease up, if this relay holds it, so that another
// instance takes over without waiting for it to expire: for programs that
// call Deliver themselves. Run releases it when it stops. The lease expires
// anyway, so an error only delays a successor.
func (r *Relay) Release(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abandon || r.leaseUntil.IsZero() {
		return nil
	}
	r.leaseUntil = time.Time{}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := r.db.ExecContext(ctx, r.q.release, r.q.table, r.c.Name); err != nil {
		return fmt.Errorf("outbox: release the lease: %w", err)
	}
	return nil
}

type pending struct {
	id       int64
	attempts int
	m        Message
}

// deliver publishes one batch. It returns the messages delivered and failed.
func (r *Relay) deliver(ctx context.Context) (delivered, failed int, err error) {
	batch, err := r.fetch(ctx)
	if err != nil {
		return 0, 0, err
	}
	// Marks and failure counts run even once ctx is done: what the broker
	// acknowledged must not be published again for want of an UPDATE.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	acked := make([]any, 0, min(len(batch), r.c.MarkEvery))
	flush := func() error {
		if len(acked) == 0 {
			return nil
		}
		_, err := r.db.ExecContext(bg, r.q.markDelivered(len(acked)), acked...)
		acked = acked[:0]
		if err != nil {
			return fmt.Errorf("outbox: mark delivered: %w", err)
		}
		return nil
	}
	for _, p := range batch {
		if err := r.hold(ctx); err != nil {
			return delivered, 0, errors.Join(err, flush())
		}
		pctx, stop := context.WithDeadline(ctx, r.leaseUntil)
		perr := r.pub.Publish(pctx, p.m)
		stop()
		if perr != nil {
			ferr := flush()
			if ctx.Err() != nil {
				return delivered, 0, errors.Join(ctx.Err(), ferr) // stopping, not a failed delivery
			}
			pe := &PublishError{ID: p.m.ID, Subject: p.m.Subject, Attempts: p.attempts + 1, Err: perr}
			if err := r.db.QueryRowContext(bg, r.q.fail, truncate(perr.Error(), 2000), p.id).Scan(&pe.Attempts); err != nil {
				ferr = errors.Join(ferr, fmt.Errorf("outbox: count attempt: %w", err))
			}
			return delivered, 1, errors.Join(pe, ferr)
		}
		delivered++
		acked = append(acked, p.id)
		if len(acked) == r.c.MarkEvery {
			if err := flush(); err != nil {
				return delivered, 0, err
			}
		}
	}
	return delivered, 0, flush()
}

func (r *Relay) fetch(ctx context.Context) ([]pending, error) {
	rows, err := r.db.QueryContext(ctx, r.q.fetch, r.c.Batch)
	if err != nil {
		return nil, fmt.Errorf("outbox: fetch: %w", err)
	}
	defer rows.Close()
	var batch []pending
	for rows.Next() {
		var p pending
		var headers *string
		var recorded int64
		if err := rows.Scan(&p.id, &p.m.ID, &p.m.Subject, &p.m.Key, &p.m.Payload, &headers, &recorded, &p.attempts); err != nil {
			return nil, fmt.Errorf("outbox: fetch: %w", err)
		}
		if p.m.Headers, err = decodeHeaders(headers); err != nil {
			return nil, err
		}
		p.m.RecordedAt = time.UnixMicro(recorded).UTC()
		batch = append(batch, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: fetch: %w", err)
	}
	return batch, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Lag returns the age of the oldest undelivered message, by the database's
// clock, or 0 when every committed message was delivered: for health checks
// and metrics.
func (r *Relay) Lag(ctx context.Context) (time.Duration, error) {
	var us int64
	err := r.db.QueryRowContext(ctx, r.q.lag).Scan(&us)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("outbox: lag: %w", err)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// purgeDue purges when Retain allows and a purge is due: every Retain/2,
// at most once a minute and at least once an hour, at most ten batches per
// round.
func (r *Relay) purgeDue(ctx context.Context) error {
	if r.c.Retain < 0 {
		return nil
	}
	every := min(max(r.c.Retain/2, time.Minute), time.Hour)
	if time.Since(r.lastPurge) < every {
		return nil
	}
	n, err := r.purge(ctx, 10)
	if err != nil {
		return err
	}
	if n < 10*purgeBatch {
		r.lastPurge = time.Now()
	}
	return nil
}

// Purge deletes the messages delivered more than Retain ago, in batches of
// a thousand rows (one statement each), and returns how many it deleted.
// Run purges by itself; Purge is for scheduled jobs and tests. With a
// negative Retain it deletes nothing.
func (r *Relay) Purge(ctx context.Context) (int64, error) {
	if r.c.Retain < 0 {
		return 0, nil
	}
	return r.purge(ctx, -1)
}

func (r *Relay) purge(ctx context.Context, batches int) (int64, error) {
	var total int64
	for i := 0; batches < 0 || i < batches; i++ {
		res, err := r.db.ExecContext(ctx, r.q.purge, r.c.Retain.Microseconds(), purgeBatch)
		if err != nil {
			return total, fmt.Errorf("outbox: purge: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("outbox: purge: %w", err)
		}
		total += n
		if n < purgeBatch {
			break
		}
	}
	return total, nil
}
