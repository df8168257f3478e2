package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/examples/webapp/projection"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.MainOptional(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// envChild makes the test binary, re-executed by startChild, run the
// projector (TestProjectorChild) with DATABASE_URL and NATS_URL from its
// environment.
const envChild = "WEBAPP_PROJECTOR_CHILD"

// TestProjectorChild is not a test: it is the body of the child process
// that startChild starts (this command's run, until SIGTERM or SIGKILL),
// and skips in a normal run.
func TestProjectorChild(t *testing.T) {
	if os.Getenv(envChild) != "1" {
		t.Skip("the projector child process, run by TestProjectorKilledMidStream")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	require.NoError(t, run(ctx, os.Getenv, log))
}

// child is a projector process.
type child struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{} // closed once the process has ended; err is then its Wait's
	err  error
}

// startChild starts a projector process on the database at dbURL and the
// NATS server at natsURL.
func startChild(t *testing.T, dbURL, natsURL string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProjectorChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"=1", "DATABASE_URL="+dbURL, "NATS_URL="+natsURL)
	c := &child{t: t, cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	require.NoError(t, cmd.Start())
	go func() { c.err = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		if !c.exited() {
			_ = cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// exited reports, without waiting, whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// wait waits, at most a minute, for the process to end, and returns its
// Wait's error.
func (c *child) wait() error {
	select {
	case <-c.done:
		return c.err
	case <-time.After(time.Minute):
		c.t.Fatalf("the projector child still runs a minute after its signal:\n%s", c.out)
		return nil
	}
}

// kill SIGKILLs the process and checks that the signal ended it.
func (c *child) kill() {
	c.t.Helper()
	require.NoError(c.t, c.cmd.Process.Signal(syscall.SIGKILL))
	err := c.wait()
	var exit *exec.ExitError
	require.True(c.t, errors.As(err, &exit), "projector child: %v\n%s", err, c.out)
	ws, ok := exit.Sys().(syscall.WaitStatus)
	require.True(c.t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "projector child not ended by SIGKILL (%v):\n%s", err, c.out)
}

// stop SIGTERMs the process and checks that it stopped cleanly.
func (c *child) stop() {
	c.t.Helper()
	require.NoError(c.t, c.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(c.t, c.wait(), "projector child:\n%s", c.out)
}

// A projector process SIGKILLed in the middle of the stream, and a fresh
// one started in its place, build exactly the read model that a projector
// running without a kill builds from the same events in a database of its
// own; replaying the whole stream into the projection again (a new
// consumer from the start, on the same inbox) changes nothing.
//
// Events the killed process committed and had not acknowledged come back
// to the new one (after the consumer's AckWait), and the replay delivers
// every event a second time: without the inbox (outbox.Inbox.Handle) they
// would be applied twice, or fail for ever on the read model's keys, and
// the test would fail.
func TestProjectorKilledMidStream(t *testing.T) {
	killedURL := pgtest.FreshURL(t, "webapp_projector_killed")
	killed := openDB(t, killedURL)
	b, err := app.OpenBroker(app.NATS{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.Close()) })

	// The commands, through the service, on the killed projector's
	// database; the relay publishes their events; no projector runs.
	total := record(t, killed, killedURL, b)
	require.Greater(t, total, 300)
	lastSeq := streamLast(t, b.JS)
	require.Equal(t, uint64(total), lastSeq, "one message per recorded event")

	first := startChild(t, killedURL, b.URL)
	deadline := time.Now().Add(time.Minute)
	for applied(t, killed) < total/5 {
		require.False(t, first.exited(), "the projector child ended on its own:\n%s", first.out)
		require.True(t, time.Now().Before(deadline), "the projector applied %d events of %d in a minute:\n%s", applied(t, killed), total, first.out)
		time.Sleep(2 * time.Millisecond) // polling the database
	}
	first.kill()
	atKill := applied(t, killed)
	require.Less(t, atKill, total, "the projector finished before it was killed: record more events")
	floor, pending := ackState(t, b.JS)
	t.Logf("killed after applying %d events of %d; the consumer's ack floor at stream sequence %d, %d delivered and not acknowledged", atKill, total, floor, pending)

	second := startChild(t, killedURL, b.URL)
	awaitProjected(t, b.JS, killed, total, lastSeq, second)
	second.stop()

	// The same events, projected without a kill into a database of their
	// own: a consumer from the start of the stream.
	refDB := openDB(t, pgtest.FreshURL(t, "webapp_projector_reference"))
	deleteConsumer(t, b.JS)
	stopRef := runProjector(t, refDB, b.JS)
	awaitProjected(t, b.JS, refDB, total, lastSeq, nil)
	stopRef()

	want := readModel(t, refDB)
	require.Len(t, want["team_view"], 6)
	require.Len(t, want["roster_view"], players)
	require.Len(t, want["team_history"], players+2*moves, "a row per join, two per move")
	require.Len(t, want["projection_inbox"], total)
	got := readModel(t, killed)
	assert.Equal(t, want, got, "the killed and restarted projector's read model is the uninterrupted one's")

	// Every event delivered again to the projection that has applied it.
	deleteConsumer(t, b.JS)
	stopAgain := runProjector(t, killed, b.JS)
	awaitProjected(t, b.JS, killed, total, lastSeq, nil)
	stopAgain()
	assert.Equal(t, got, readModel(t, killed), "redelivered events changed the read model")
}

// The workload: 6 teams, players joins spread over them, and moves of
// the first players (each moved twice, each player's events in order).
const (
	teams   = 6
	workers = 4
	players = 240
	moves   = 80
)

// record runs the workload through the service on db and returns how many
// events were recorded, once the relay has published them all.
func record(t *testing.T, db *sqlx.DB, dbURL string, b *app.Broker) int {
	t.Helper()
	a, err := app.New(db, quiet, app.Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() {
		relayDone <- a.RunEvents(ctx, b.JS, app.EventsConfig{DatabaseURL: dbURL, NoProjector: true, Log: quiet,
			Relay: outbox.RelayConfig{Poll: 10 * time.Millisecond}})
	}()
	srv := httptest.NewServer(a.Echo)
	defer srv.Close()
	// post sends a command and returns the id it answers with (0 when it
	// failed, the test failing too).
	post := func(path, body string) int64 {
		res, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if !assert.NoError(t, err) {
			return 0
		}
		defer res.Body.Close()
		var out struct {
			ID int64 `json:"id"`
		}
		raw, err := io.ReadAll(res.Body)
		if !assert.NoError(t, err) || !assert.Less(t, res.StatusCode, 300, "%s %s: %s", path, body, raw) ||
			!assert.NoError(t, json.Unmarshal(raw, &out), "%s", raw) || !assert.Positive(t, out.ID, "%s", raw) {
			return 0
		}
		return out.ID
	}
	var ids [teams]int64
	for i := range teams {
		ids[i] = post("/teams", fmt.Sprintf(`{"name":"t%d","capacity":%d}`, i, players))
		require.NotZero(t, ids[i])
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < players; i += workers {
				team := ids[i%teams]
				player := post(fmt.Sprintf("/teams/%d/players", team), fmt.Sprintf(`{"name":"p%d"}`, i))
				if player == 0 {
					return
				}
				if i < moves/2 {
					for k := 1; k <= 2; k++ {
						if post(fmt.Sprintf("/players/%d/move", player), fmt.Sprintf(`{"team_id":%d}`, ids[(i+k)%teams])) == 0 {
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM `+outbox.DefaultTable))
	require.Equal(t, teams+players+moves, n)
	require.Eventually(t, func() bool {
		var undelivered int
		require.NoError(t, db.Get(&undelivered, `SELECT count(*) FROM `+outbox.DefaultTable+` WHERE delivered_at IS NULL`))
		return undelivered == 0
	}, time.Minute, 5*time.Millisecond, "the relay publishes every event")
	cancel()
	require.NoError(t, <-relayDone)
	return n
}

// openDB opens the database at u as the service does, and migrates it.
func openDB(t *testing.T, u string) *sqlx.DB {
	t.Helper()
	db, err := app.Open(app.Database{URL: u})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.NoError(t, store.Migrate(context.Background(), db))
	return db
}

// applied counts the events the read model shows: a team per creation, and
// an event id in the history per join or move. It does not look at the
// inbox.
func applied(t *testing.T, db *sqlx.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.Get(&n, `SELECT (SELECT count(*) FROM team_view) + (SELECT count(DISTINCT event_id) FROM team_history)`))
	return n
}

func streamLast(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), events.Stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.LastSeq
}

// awaitProjected waits until the projector's consumer has had every message
// of the stream, up to lastSeq, acknowledged, and db's read model shows
// total events. p, when not nil, is the projector process, which must not
// end meanwhile.
func awaitProjected(t *testing.T, js jetstream.JetStream, db *sqlx.DB, total int, lastSeq uint64, p *child) {
	t.Helper()
	// More than the consumer's AckWait (30s): what a killed projector had
	// been delivered comes back only after it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if p != nil {
			require.False(t, p.exited(), "the projector child ended on its own:\n%s", p.out)
		}
		done := false
		if c, err := js.Consumer(context.Background(), events.Stream, projection.Durable); err == nil {
			if info, err := c.Info(context.Background()); err == nil {
				done = info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == lastSeq
			}
		}
		if done && applied(t, db) == total {
			return
		}
		if time.Now().After(deadline) {
			out := ""
			if p != nil {
				out = p.out.String()
			}
			t.Fatalf("after 2 minutes the read model shows %d events of %d, or the consumer has not had them all acknowledged:\n%s", applied(t, db), total, out)
		}
		time.Sleep(10 * time.Millisecond) // polling the consumer and the database
	}
}

// ackState returns the projector's consumer's ack floor (stream sequence)
// and how many messages it has delivered and not had acknowledged.
func ackState(t *testing.T, js jetstream.JetStream) (floor uint64, pending int) {
	t.Helper()
	c, err := js.Consumer(context.Background(), events.Stream, projection.Durable)
	require.NoError(t, err)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	return info.AckFloor.Stream, info.NumAckPending
}

func deleteConsumer(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	require.NoError(t, js.DeleteConsumer(context.Background(), events.Stream, projection.Durable))
}

// runProjector runs the service's projector on db in this process until
// the returned function is called.
func runProjector(t *testing.T, db *sqlx.DB, js jetstream.JetStream) (stop func()) {
	t.Helper()
	p, err := projection.New(db, uow.New(db), quiet)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, js) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); assert.NoError(t, <-done) }) }
	t.Cleanup(stop)
	return stop
}

// readModel returns the read model's tables, each as its sorted rows in
// text, and the ids the inbox holds.
func readModel(t *testing.T, db *sqlx.DB) map[string][]string {
	t.Helper()
	queries := map[string]string{
		"team_view":           `SELECT concat_ws('|', team_id, name, capacity) FROM team_view ORDER BY 1`,
		"roster_view":         `SELECT concat_ws('|', player_id, team_id, name) FROM roster_view ORDER BY 1`,
		"team_history":        `SELECT concat_ws('|', team_id, event_id, type, player_id, player_name, coalesce(from_team_id::text, '-'), to_team_id, occurred_at) FROM team_history ORDER BY 1`,
		"projection_position": `SELECT concat_ws('|', name, recorded_at) FROM projection_position ORDER BY 1`,
		"projection_inbox":    `SELECT message_id FROM ` + store.InboxTable + ` ORDER BY 1`,
	}
	out := map[string][]string{}
	for table, q := range queries {
		var rows []string
		require.NoError(t, db.Select(&rows, q), table)
		out[table] = rows
	}
	return out
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
