package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/uow"
)

// counter counts the units' BEGINs and lets a test wait for a number.
type counter struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

func newCounter() *counter { return &counter{changed: make(chan struct{})} }

func (c *counter) Observe(_ context.Context, e uow.Event) {
	if e.Kind != uow.EventBegin {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// await waits until n BEGINs have been counted.
func (c *counter) await(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		got, changed := c.n, c.changed
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%d BEGINs of %d after 30s", got, n)
		}
	}
}

// runProjector runs the app's projector until the returned function is
// called, which waits for it to stop.
func runProjector(t *testing.T, c *client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, app.EnsureStream(ctx, c.broker.JS))
	done := make(chan error, 1)
	go func() { done <- c.app.Projector.Run(ctx, c.broker.JS) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); assert.NoError(t, <-done) }) }
	t.Cleanup(stop)
	return stop
}

func lagOf(t *testing.T, h http.Header) float64 {
	t.Helper()
	lag, err := strconv.ParseFloat(h.Get("X-Projection-Lag"), 64)
	require.NoError(t, err, "X-Projection-Lag: %q", h.Get("X-Projection-Lag"))
	return lag
}

// Read-your-writes: a query with a command's token answers once the
// projection shows the command; while the projector is paused it waits,
// and answers fresh once the projector goes on. Without a token the answer
// may be stale, and says by how much the projection is behind.
func TestReadYourWrites(t *testing.T) {
	backends(t, func(t *testing.T, e env) {
		begins := newCounter()
		c, _ := startEvents(t, e.db, quiet, app.Options{Wait: time.Minute, Manager: []uow.ManagerOption{uow.WithObserver(uow.ObserverFunc(begins.Observe))}},
			app.EventsConfig{NoProjector: true})
		stop := runProjector(t, c)
		team := c.team("Reds", 3)
		path := fmt.Sprintf("/teams/%d", team)
		status, body, h := c.fresh("GET", path, c.token())
		require.Equal(t, 200, status, body)
		assert.Equal(t, "Reds", body["name"])
		assert.Zero(t, lagOf(t, h), "the projection has applied everything")

		stop() // the projector pauses
		c.player(team, "Ann")
		joined := c.token()
		status, body, h = c.doWith("GET", path, "", nil)
		require.Equal(t, 200, status, body)
		assert.Empty(t, body["players"], "without a token: the projection as it is, stale")
		assert.Positive(t, lagOf(t, h), "and how far behind it is")
		status, body, h = c.doWith("GET", path+"/history", "", nil)
		require.Equal(t, 200, status, body)
		assert.Empty(t, body["history"])
		assert.Positive(t, lagOf(t, h))

		before := begins.count()
		answer := make(chan response, 1)
		go func() {
			answer <- c.sendWith(context.Background(), "GET", path, "", http.Header{"X-Consistency-Token": {joined}})
		}()
		// Two read units begun: the first has looked and not found the
		// join applied, so the query is waiting.
		begins.await(t, before+2)
		select {
		case r := <-answer:
			t.Fatalf("answered while the projector was paused: %d %s", r.status, r.body)
		default:
		}
		runProjector(t, c) // the projector goes on
		r := <-answer
		require.Equal(t, 200, r.status, string(r.body))
		assert.Contains(t, string(r.body), `"players":[{"id":`)
		assert.Contains(t, string(r.body), `"name":"Ann"`)
		status, body, _ = c.fresh("GET", path+"/history", joined)
		require.Equal(t, 200, status)
		assert.Len(t, body["history"], 1)
	})
}

// With the projector stopped, a query with a token gets the explicit
// status once the wait is over: 503 {"error":"projection behind"} with
// Retry-After, never the stale roster.
func TestReadWithTokenWhileProjectorStopped(t *testing.T) {
	backends(t, func(t *testing.T, e env) {
		c, _ := startEvents(t, e.db, quiet, app.Options{Wait: 200 * time.Millisecond}, app.EventsConfig{NoProjector: true})
		team := c.team("Reds", 3)
		for _, path := range []string{fmt.Sprintf("/teams/%d", team), fmt.Sprintf("/teams/%d/history", team)} {
			r := c.sendWith(context.Background(), "GET", path, "", http.Header{"X-Consistency-Token": {c.token()}})
			assert.Equal(t, http.StatusServiceUnavailable, r.status, path)
			assert.JSONEq(t, `{"error":"projection behind"}`, string(r.body), path)
			assert.Equal(t, "1", r.header.Get("Retry-After"), path)
		}
		r := c.sendWith(context.Background(), "GET", fmt.Sprintf("/teams/%d", team), "", http.Header{"X-Consistency-Token": {"bad token"}})
		assert.Equal(t, http.StatusBadRequest, r.status)
	})
}
