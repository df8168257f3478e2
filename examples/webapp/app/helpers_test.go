package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
)

// The SQLite half runs without PostgreSQL; only the PostgreSQL tests skip.
func TestMain(m *testing.M) { os.Exit(pgtest.MainOptional(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is a migrated database of the test's own, opened as the service opens
// it (app.Open).
type env struct {
	db       *sqlx.DB
	url      string // PostgreSQL's; "" for SQLite
	postgres bool
	// other opens another pool on the same database, for looking at it
	// from outside the service's connections.
	other func() *sqlx.DB
}

// backends runs a test against PostgreSQL and against SQLite.
func backends(t *testing.T, test func(t *testing.T, e env)) {
	t.Run("postgres", func(t *testing.T) { test(t, postgres(t)) })
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "webapp.db")
		test(t, open(t, "", path, false))
	})
}

// postgres returns a fresh PostgreSQL database for the test.
func postgres(t *testing.T) env {
	return open(t, pgtest.FreshURL(t, "webapp_"+t.Name()), "", true)
}

func open(t *testing.T, url, path string, pg bool) env {
	pool := func() *sqlx.DB {
		db, err := app.Open(app.Database{URL: url, SQLitePath: path})
		require.NoError(t, err)
		t.Cleanup(func() {
			assert.Zero(t, db.Stats().InUse, "connections still in use at the end of the test")
			db.Close()
		})
		return db
	}
	db := pool()
	require.NoError(t, store.Migrate(context.Background(), db))
	return env{db: db, url: url, postgres: pg, other: pool}
}

type client struct {
	t      *testing.T
	url    string
	srv    *httptest.Server
	app    *app.App
	broker *app.Broker
	stopEv func() // stops the relay and the projector, and waits for them
	tok    string
}

// start serves the app over db on a real HTTP server, with its relay and
// projector running on an embedded NATS server of the test's own, all
// closed (after the requests have finished) at the end of the test.
func start(t *testing.T, db *sqlx.DB, log *slog.Logger, opts ...uow.ManagerOption) (*client, *app.App) {
	return startWith(t, db, log, app.Options{Manager: opts})
}

// startWith is start with the app's options.
func startWith(t *testing.T, db *sqlx.DB, log *slog.Logger, o app.Options) (*client, *app.App) {
	return startEvents(t, db, log, o, app.EventsConfig{})
}

// startEvents is startWith with the events' configuration: ec.DatabaseURL
// is db's (for the relay's LISTEN) when db is PostgreSQL's.
func startEvents(t *testing.T, db *sqlx.DB, log *slog.Logger, o app.Options, ec app.EventsConfig) (*client, *app.App) {
	a, err := app.New(db, log, o)
	require.NoError(t, err)
	b := broker(t)
	if ec.Log == nil {
		ec.Log = log
	}
	if ec.Relay.Poll == 0 {
		ec.Relay.Poll = 10 * time.Millisecond // no LISTEN here: a short poll instead
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.RunEvents(ctx, b.JS, ec) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			assert.NoError(t, <-done)
		})
	}
	t.Cleanup(stop) // before the broker closes (cleanups run last first)
	srv := httptest.NewServer(a.Echo)
	t.Cleanup(srv.Close)
	return &client{t: t, url: srv.URL, srv: srv, app: a, broker: b, stopEv: stop}, a
}

// broker starts an embedded NATS server with JetStream for the test,
// stopped at its end.
func broker(t *testing.T) *app.Broker {
	b, err := app.OpenBroker(app.NATS{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.Close()) })
	return b
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send sends a request with a JSON body.
func (c *client) send(ctx context.Context, method, path, body string) response {
	return c.sendWith(ctx, method, path, body, nil)
}

// sendWith sends a request with a JSON body and headers.
func (c *client) sendWith(ctx context.Context, method, path, body string, h http.Header) response {
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, strings.NewReader(body))
	require.NoError(c.t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	return response{res.StatusCode, res.Header, b}
}

// do sends a request and decodes the JSON answer into a map.
func (c *client) do(method, path, body string) (int, map[string]any) {
	status, out, _ := c.doWith(method, path, body, nil)
	return status, out
}

// doWith sends a request with headers and decodes the JSON answer into a
// map; it returns the response's headers too.
func (c *client) doWith(method, path, body string, h http.Header) (int, map[string]any, http.Header) {
	r := c.sendWith(context.Background(), method, path, body, h)
	var out map[string]any
	if len(bytes.TrimSpace(r.body)) > 0 {
		require.NoError(c.t, json.Unmarshal(r.body, &out), string(r.body))
	}
	return r.status, out, r.header
}

// fresh is a GET (or HEAD) that waits for the projection to show the
// command that answered with token.
func (c *client) fresh(method, path, token string) (int, map[string]any, http.Header) {
	return c.doWith(method, path, "", http.Header{"X-Consistency-Token": {token}})
}

// token is the consistency token of the last team or player the client
// made (c.team, c.player).
func (c *client) token() string { return c.tok }

func (c *client) team(name string, capacity int) int64 {
	status, body, h := c.doWith("POST", "/teams", fmt.Sprintf(`{"name":%q,"capacity":%d}`, name, capacity), nil)
	require.Equal(c.t, 201, status, body)
	require.NotEmpty(c.t, h.Get("X-Consistency-Token"))
	c.tok = h.Get("X-Consistency-Token")
	return int64(body["id"].(float64))
}

func (c *client) player(team int64, name string) int64 {
	status, body, h := c.doWith("POST", fmt.Sprintf("/teams/%d/players", team), fmt.Sprintf(`{"name":%q}`, name), nil)
	require.Equal(c.t, 201, status, body)
	require.NotEmpty(c.t, h.Get("X-Consistency-Token"))
	c.tok = h.Get("X-Consistency-Token")
	return int64(body["id"].(float64))
}

// leaks are what an error message must never contain.
var leaks = []string{"SQL", "sql", "pq:", "pq ", "sqlite", "SELECT", "INSERT", "UPDATE", "boom", "explode", "exception", "violat", "deadlock", "rejected", "COMMIT"}

// assertInternal checks that r is the API's opaque error shape.
func assertInternal(t *testing.T, r response, status int) {
	t.Helper()
	assert.Equal(t, status, r.status)
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	var body map[string]string
	require.NoError(t, json.Unmarshal(r.body, &body), "a JSON body: %q", r.body)
	require.Len(t, body, 1, "only {\"error\": ...}: %s", r.body)
	for _, leak := range leaks {
		assert.NotContains(t, body["error"], leak)
	}
}

// count runs a count(*) query (with ? placeholders).
func count(t *testing.T, db *sqlx.DB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.Get(&n, db.Rebind(query), args...))
	return n
}

// rows counts what the database holds for a team.
func rows(t *testing.T, db *sqlx.DB, team int64) (players, roster int) {
	t.Helper()
	players = count(t, db, `SELECT count(*) FROM players WHERE team_id = ?`, team)
	roster = count(t, db, `SELECT player_count FROM team_rosters WHERE team_id = ?`, team)
	return players, roster
}

// eventCount counts the events of type typ recorded in the outbox.
func eventCount(t *testing.T, db *sqlx.DB, typ string) int {
	return count(t, db, `SELECT count(*) FROM uowkit_outbox WHERE subject = ?`, events.Subject(typ))
}

// published returns the messages on the events' stream by subject, once
// the relay has published every event recorded in the outbox. It checks
// that each carries its event's id as Nats-Msg-Id and in its body, and that
// no id is on the stream twice.
func (c *client) published(e env) map[string][]jetstream.RawStreamMsg {
	t := c.t
	t.Helper()
	require.Eventually(t, func() bool {
		return count(t, e.db, `SELECT count(*) FROM uowkit_outbox WHERE delivered_at IS NULL`) == 0
	}, 30*time.Second, 5*time.Millisecond, "the relay publishes every event recorded")
	ctx := context.Background()
	s, err := c.broker.JS.Stream(ctx, events.Stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	out := map[string][]jetstream.RawStreamMsg{}
	ids := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		id := m.Header.Get("Nats-Msg-Id")
		require.NotEmpty(t, id)
		assert.False(t, ids[id], "event %s is on the stream once", id)
		ids[id] = true
		var body map[string]any
		require.NoError(t, json.Unmarshal(m.Data, &body))
		assert.Equal(t, id, body["id"], "the body's id is the Nats-Msg-Id")
		assert.Equal(t, m.Subject, events.Subject(body["type"].(string)))
		out[m.Subject] = append(out[m.Subject], *m)
	}
	return out
}

// hammer sends n concurrent requests and counts the statuses.
func hammer(n int, send func(i int) int) map[int]int {
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			s := send(i)
			mu.Lock()
			statuses[s]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return statuses
}

// logs records what the service logs, for tests to look at.
type logs struct {
	mu      sync.Mutex
	records []slog.Record
}

func newLogs() (*logs, *slog.Logger) {
	l := &logs{}
	return l, slog.New(l)
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

// find returns the records with message msg.
func (l *logs) find(msg string) []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []slog.Record
	for _, r := range l.records {
		if r.Message == msg {
			out = append(out, r)
		}
	}
	return out
}

// atLeast returns the records at level or above, as text.
func (l *logs) atLeast(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if r.Level >= level {
			out = append(out, r.Level.String()+" "+r.Message+" "+attrs(r))
		}
	}
	return out
}

// attr returns the value of a record's attribute, as text.
func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

func attrs(r slog.Record) string {
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, "%s=%q ", a.Key, a.Value.String())
		return true
	})
	return b.String()
}
