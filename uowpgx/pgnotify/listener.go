package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config configures a Listener. Zero values mean the defaults.
type Config struct {
	// BackoffMin and BackoffMax bound the wait before reconnecting after a
	// failure, doubling from BackoffMin (default 100ms) to BackoffMax
	// (default 5s).
	BackoffMin, BackoffMax time.Duration
	// Ping is how long the connection may stay silent before the listener
	// checks it with a round trip (default 30s): a connection that died
	// without a word (a dropped network path) is found and replaced.
	Ping time.Duration
	// OnError, when set, is told of every connection failure, before the
	// backoff. It must be quick.
	OnError func(err error)
}

// Listener signals C whenever the channel it LISTENs on is notified, and
// after every (re)connection.
type Listener struct {
	conn    *pgx.ConnConfig
	channel string
	c       Config
	wake    chan struct{}

	running  atomic.Bool
	connects atomic.Int64
}

// New returns a listener on channel (for an outbox: its table's name) of the
// database at connString (a URL or key=value string, as pgx.ParseConfig
// reads it). It connects only when Run runs.
func New(connString, channel string, c Config) (*Listener, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("pgnotify: %w", err)
	}
	return NewWithConfig(cfg, channel, c)
}

// NewWithConfig is New with a parsed pgx configuration, which it copies.
func NewWithConfig(cfg *pgx.ConnConfig, channel string, c Config) (*Listener, error) {
	switch {
	case cfg == nil:
		return nil, errors.New("pgnotify: nil connection configuration")
	case channel == "":
		return nil, errors.New("pgnotify: empty channel")
	case c.BackoffMin < 0 || c.BackoffMax < 0 || c.Ping < 0:
		return nil, errors.New("pgnotify: negative duration")
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = 100 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 5 * time.Second
	}
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	if c.Ping == 0 {
		c.Ping = 30 * time.Second
	}
	cfg = cfg.Copy()
	if _, set := cfg.RuntimeParams["application_name"]; !set {
		cfg.RuntimeParams["application_name"] = "uowkit-pgnotify"
	}
	return &Listener{conn: cfg, channel: channel, c: c, wake: make(chan struct{}, 1)}, nil
}

// C returns the channel signalled on each notification and after each
// (re)connection: give it to outbox.RelayConfig.Wake.
func (l *Listener) C() <-chan struct{} { return l.wake }

// Connects returns how many times the listener has connected and started
// listening; it is incremented after the signal that follows each
// connection.
func (l *Listener) Connects() int64 { return l.connects.Load() }

// Run listens until ctx is done, reconnecting after failures, then closes
// its connection and returns nil. It returns an error only when called
// while already running.
func (l *Listener) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("pgnotify: listener already running")
	}
	defer l.running.Store(false)
	failures := 0
	for ctx.Err() == nil {
		listened, err := l.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			failures = 0
		}
		failures++
		if l.c.OnError != nil && err != nil {
			l.c.OnError(err)
		}
		t := time.NewTimer(l.backoff(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	return nil
}

func (l *Listener) backoff(n int) time.Duration {
	d := l.c.BackoffMin
	for i := 1; i < n && d < l.c.BackoffMax; i++ {
		d *= 2
	}
	return min(d, l.c.BackoffMax)
}

// session connects, listens and signals until the connection fails or ctx
// is done. listened says whether it got as far as listening.
func (l *Listener) session(ctx context.Context) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, l.conn)
	if err != nil {
		return false, fmt.Errorf("pgnotify: connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("pgnotify: listen: %w", err)
	}
	// Whatever was notified while we were not listening is read now.
	l.signal()
	l.connects.Add(1)
	for {
		wctx, cancel := context.WithTimeout(ctx, l.c.Ping)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.signal()
		case ctx.Err() != nil:
			return true, nil
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Silent for Ping: make sure the connection still answers.
			pctx, cancel := context.WithTimeout(ctx, l.c.Ping)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("pgnotify: ping: %w", err)
			}
		default:
			return true, fmt.Errorf("pgnotify: wait: %w", err)
		}
	}
}

// signal wakes the reader without blocking; pending signals coalesce.
func (l *Listener) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}
