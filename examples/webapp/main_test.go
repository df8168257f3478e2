package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
)

// The layering test runs without PostgreSQL; only the others skip.
func TestMain(m *testing.M) { os.Exit(pgtest.MainOptional(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// running is run, serving a fresh PostgreSQL database in the background.
type running struct {
	t    *testing.T
	addr string
	done chan error
	db   *sqlx.DB // the test's own pool on the service's database
}

func startService(t *testing.T, grace time.Duration) *running {
	url := pgtest.FreshURL(t, "webapp_"+t.Name())
	s := startWith(t, config{DatabaseURL: url, Addr: "127.0.0.1:0", Grace: grace}, quiet)
	s.db = sqlx.MustOpen("postgres", url)
	t.Cleanup(func() { s.db.Close() })
	return s
}

// startSQLite runs the service on a SQLite file of the test's own, logging
// to log.
func startSQLite(t *testing.T, log *slog.Logger) *running {
	path := filepath.Join(t.TempDir(), "webapp.db")
	return startWith(t, config{SQLitePath: path, Addr: "127.0.0.1:0", Grace: time.Minute}, log)
}

// startWith runs the service with cfg in the background, and returns once
// it listens. s.db is not set.
func startWith(t *testing.T, cfg config, log *slog.Logger) *running {
	s := &running{t: t, done: make(chan error, 1)}
	ready := make(chan net.Addr, 1)
	go func() { s.done <- run(cfg, log, func(a net.Addr) { ready <- a }) }()
	select {
	case a := <-ready:
		s.addr = a.String()
	case err := <-s.done:
		t.Fatalf("run: %v", err)
	}
	return s
}

// post sends a JSON POST and decodes the JSON answer.
func (s *running) post(path, body string) (int, map[string]any) {
	res, err := http.Post("http://"+s.addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, map[string]any{"transport": err.Error()}
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		out = map[string]any{"decode": err.Error()}
	}
	return res.StatusCode, out
}

// stuckJoin starts a join that waits in the database for the team row, held
// by the returned transaction, and returns once it is waiting.
func (s *running) stuckJoin() (*sqlx.Tx, chan map[string]any) {
	t := s.t
	status, body := s.post("/teams", `{"name":"Reds","capacity":5}`)
	require.Equal(t, 201, status, body)
	team := int64(body["id"].(float64))
	v, err := s.db.Beginx()
	require.NoError(t, err)
	t.Cleanup(func() { v.Rollback() })
	v.MustExec(`SELECT 1 FROM teams WHERE id = $1 FOR UPDATE`, team)
	answer := make(chan map[string]any, 1)
	go func() {
		status, body := s.post(fmt.Sprintf("/teams/%d/players", team), `{"name":"Ann"}`)
		body["status"] = status
		answer <- body
	}()
	pgtest.WaitBlocked(t, s.db, "FROM teams WHERE id", 1)
	return v, answer
}

// signal sends sig to this process, where run is catching it. Should run
// not catch it, a handler of the test's own keeps it from killing the test
// binary, and the test fails instead.
func (s *running) signal(sig syscall.Signal) {
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, sig)
	s.t.Cleanup(func() { signal.Stop(guard) })
	require.NoError(s.t, syscall.Kill(os.Getpid(), sig))
}

// stopped waits for run to return.
func (s *running) stopped() error {
	select {
	case err := <-s.done:
		return err
	case <-time.After(time.Minute):
		s.t.Fatal("run did not return a minute after the signal")
		return nil
	}
}

// SIGTERM and SIGINT start a graceful shutdown: the listener closes at once,
// the request in flight finishes and its unit commits, and run returns nil
// (exit code 0).
func TestSignalsShutDownGracefully(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			s := startService(t, time.Minute)
			v, answer := s.stuckJoin()
			s.signal(sig)
			require.Eventually(t, func() bool {
				c, err := net.Dial("tcp", s.addr)
				if err == nil {
					c.Close()
				}
				return err != nil
			}, 10*time.Second, 10*time.Millisecond, "new connections are refused during shutdown")
			require.NoError(t, v.Rollback()) // the join goes on
			assert.Equal(t, 201, (<-answer)["status"])
			require.NoError(t, s.stopped())
			var n int
			require.NoError(t, s.db.Get(&n, `SELECT count(*) FROM players`))
			assert.Equal(t, 1, n, "the in-flight request's unit committed")
		})
	}
}

// When the grace period passes with a request still in flight, the request
// is cancelled: its unit rolls back and lets go of the database while the
// lock it waited for is still held, the client gets the API's 503, and run
// returns nil, the shutdown having done what it should.
func TestGraceExpiryCancelsRequestsInFlight(t *testing.T) {
	s := startService(t, 50*time.Millisecond)
	v, answer := s.stuckJoin()
	s.signal(syscall.SIGTERM)
	require.NoError(t, s.stopped())
	assert.Equal(t, map[string]any{"status": 503, "error": "request cancelled"}, <-answer)
	var waiting int
	require.NoError(t, s.db.Get(&waiting, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`))
	assert.Zero(t, waiting, "no statement of the service still waits for the lock")
	require.NoError(t, v.Rollback())
	var n int
	require.NoError(t, s.db.Get(&n, `SELECT count(*) FROM players`))
	assert.Zero(t, n, "the cancelled request's unit rolled back")
}

// A client that opened a connection and sent nothing does not hold the
// shutdown up: net/http's Shutdown counts such a connection as idle, and
// closes it, only 5 s after it was accepted; the service closes it at once.
// (In-flight requests still finish: TestSignalsShutDownGracefully.) The
// bound is functional, not a benchmark: well under those 5 s.
func TestSilentConnectionDoesNotHoldShutdown(t *testing.T) {
	s := startSQLite(t, quiet)
	silent, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer silent.Close()
	// The server accepts connections in order: once a request on a later
	// one is answered, the silent one has been accepted, and is new.
	later := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := later.Get("http://" + s.addr + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	start := time.Now()
	s.signal(syscall.SIGTERM)
	require.NoError(t, s.stopped())
	assert.Less(t, time.Since(start), 3*time.Second, "run returned long after the signal")
	n, err := silent.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF, "the server closed the silent connection")
}
