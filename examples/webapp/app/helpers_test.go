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
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/domain"
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
	return env{db: db, postgres: pg, other: pool}
}

type client struct {
	t     *testing.T
	url   string
	srv   *httptest.Server
	hooks *hooks
}

// start serves the app over db on a real HTTP server, closed (after its
// requests have finished) at the end of the test.
func start(t *testing.T, db *sqlx.DB, log *slog.Logger, opts ...uow.ManagerOption) (*client, *app.App) {
	return startWith(t, db, log, app.Options{Manager: opts})
}

// startWith is start with the app's options.
func startWith(t *testing.T, db *sqlx.DB, log *slog.Logger, o app.Options) (*client, *app.App) {
	a, err := app.New(db, log, o)
	require.NoError(t, err)
	h := &hooks{changed: make(chan struct{})}
	a.Echo.Use(h.last) // innermost: after the unit middleware
	srv := httptest.NewServer(a.Echo)
	t.Cleanup(srv.Close)
	return &client{t: t, url: srv.URL, srv: srv, hooks: h}, a
}

// hooks tells when the service's work after the response is done. The
// middleware runs the after-commit and after-rollback hooks of a request's
// units (the service publishes its events from them) once the response has
// gone, on a goroutine of their own, one after the other in the order they
// were registered. hooks adds one of each kind to the unit of every run of
// the handler (every attempt, in buffered mode), after the handler has
// returned and so after the service's own: when it has run, so have they.
type hooks struct {
	mu       sync.Mutex
	attempts int           // runs of the handler, each in a unit of its own
	done     int           // runs whose hooks have all run
	changed  chan struct{} // closed, and replaced, when done grows
}

// last is an Echo middleware, to be installed inside the unit middleware.
func (h *hooks) last(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		h.mu.Lock()
		h.attempts++
		h.mu.Unlock()
		err := next(c)
		// The unit is decided after the handler: exactly one of the two runs
		// (neither would after a partial or unknown commit, which these
		// tests do not cause).
		finish := func(context.Context) error { h.finish(); return nil }
		if uow.AfterCommit(ctx, finish) != nil || uow.AfterRollback(ctx, finish) != nil {
			h.finish() // the unit is over already (its context ended): no hook to wait for
		}
		return err
	}
}

func (h *hooks) finish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done++
	close(h.changed)
	h.changed = make(chan struct{})
}

// settle waits until the hooks of every request answered so far have run.
// Call it once the responses are in, before looking at what was published.
func (c *client) settle() {
	c.t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		c.hooks.mu.Lock()
		attempts, done, changed := c.hooks.attempts, c.hooks.done, c.hooks.changed
		c.hooks.mu.Unlock()
		if done >= attempts {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			c.t.Fatalf("the hooks of %d of %d handler runs had not run 30s later", attempts-done, attempts)
		}
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send sends a request with a JSON body.
func (c *client) send(ctx context.Context, method, path, body string) response {
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, strings.NewReader(body))
	require.NoError(c.t, err)
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
	r := c.send(context.Background(), method, path, body)
	var out map[string]any
	if len(bytes.TrimSpace(r.body)) > 0 {
		require.NoError(c.t, json.Unmarshal(r.body, &out), string(r.body))
	}
	return r.status, out
}

func (c *client) team(name string, capacity int) int64 {
	status, body := c.do("POST", "/teams", fmt.Sprintf(`{"name":%q,"capacity":%d}`, name, capacity))
	require.Equal(c.t, 201, status, body)
	return int64(body["id"].(float64))
}

func (c *client) player(team int64, name string) int64 {
	status, body := c.do("POST", fmt.Sprintf("/teams/%d/players", team), fmt.Sprintf(`{"name":%q}`, name))
	require.Equal(c.t, 201, status, body)
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

func eventCount(t *testing.T, db *sqlx.DB, typ string) int {
	return count(t, db, `SELECT count(*) FROM events WHERE type = ?`, typ)
}

// publications counts the events published on a's bus, by type, and checks
// at each one that it is already committed: the subscriber looks for the
// event's row through a pool of its own, which only sees committed rows.
// Publishing before COMMIT (or for work that then rolled back) shows up in
// early. Events are published after the response, so of and premature
// first wait for the hooks of the requests answered so far (settle).
type publications struct {
	c      *client
	mu     sync.Mutex
	byType map[string]int
	early  atomic.Int64
}

func subscribe(t *testing.T, c *client, a *app.App, e env) *publications {
	p := &publications{c: c, byType: map[string]int{}}
	check := e.other()
	t.Cleanup(c.settle) // before check closes: no publication is left to look
	a.Bus.Subscribe(func(ctx context.Context, ev domain.Event) {
		var n int
		if err := check.GetContext(ctx, &n, check.Rebind(`SELECT count(*) FROM events WHERE id = ?`), ev.ID); err != nil || n != 1 {
			p.early.Add(1)
		}
		p.mu.Lock()
		p.byType[ev.Type]++
		p.mu.Unlock()
	})
	return p
}

// of returns the number of events of type typ published so far.
func (p *publications) of(typ string) int {
	p.c.settle()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byType[typ]
}

// premature returns the number of events published before their row was
// committed.
func (p *publications) premature() int64 {
	p.c.settle()
	return p.early.Load()
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
