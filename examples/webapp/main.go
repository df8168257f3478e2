package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/service"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/uow"
)

func main() {
	cfg, err := configFrom(os.Getenv)
	// With a bad configuration, cfg.LogLevel is Info (its zero value).
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err != nil {
		log.Error("bad configuration: webapp not started", slog.Any("error", err))
		os.Exit(2)
	}
	if err := run(cfg, log, nil); err != nil {
		log.Error("webapp stopped", slog.Any("error", err))
		os.Exit(1)
	}
	log.Info("webapp stopped")
}

// config is the service's configuration, read from the environment. Its
// zero value, but for the database, serves with no request deadline, a pool
// of app.MaxConns, and no tracing.
type config struct {
	DatabaseURL    string        // DATABASE_URL; empty: SQLite
	SQLitePath     string        // SQLITE_PATH; see defaultSQLitePath
	MaxConns       int           // DB_MAX_CONNS: the PostgreSQL pool's size; 0: app.MaxConns
	Addr           string        // ADDR
	RequestTimeout time.Duration // REQUEST_TIMEOUT: the deadline of each request; 0: none
	Grace          time.Duration // SHUTDOWN_GRACE: how long in-flight requests may take to finish
	LogLevel       slog.Level    // LOG_LEVEL
	OTLP           string        // OTEL_EXPORTER_OTLP_ENDPOINT: where to export traces; empty: no tracing
	NATSURL        string        // NATS_URL: an external NATS server with JetStream; empty: embedded
	ReplicaURLs    []string      // REPLICA_URLS: PostgreSQL streaming replicas, for the read-only units
	Wait           time.Duration // CONSISTENCY_WAIT: how long a read with a token waits for the projection
	natsDir        string        // the embedded NATS server's directory, made by run
}

// Defaults of the settings.
const (
	defaultRequestTimeout = 10 * time.Second
	defaultGrace          = 15 * time.Second
	defaultWait           = service.DefaultWait
)

// configFrom reads the configuration through getenv. It reports every bad
// value at once, each naming its variable, what it wants and what it got.
func configFrom(getenv func(string) string) (config, error) {
	var errs []error
	bad := func(key, want string) {
		errs = append(errs, fmt.Errorf("%s: want %s, got %q", key, want, getenv(key)))
	}
	cfg := config{
		DatabaseURL: getenv("DATABASE_URL"),
		SQLitePath:  getenv("SQLITE_PATH"),
		Addr:        env(getenv, "ADDR", ":8080"),
		OTLP:        getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
		NATSURL:     getenv("NATS_URL"),
	}
	for _, u := range strings.Split(getenv("REPLICA_URLS"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.ReplicaURLs = append(cfg.ReplicaURLs, u)
		}
	}
	if len(cfg.ReplicaURLs) > 0 && cfg.DatabaseURL == "" {
		errs = append(errs, errors.New("REPLICA_URLS: replicas of PostgreSQL need DATABASE_URL"))
	}
	if cfg.DatabaseURL == "" && cfg.SQLitePath == "" {
		path, err := defaultSQLitePath()
		if err != nil {
			errs = append(errs, err)
		}
		cfg.SQLitePath = path
	}
	if n, err := strconv.Atoi(env(getenv, "DB_MAX_CONNS", strconv.Itoa(app.MaxConns))); err != nil || n <= 0 {
		bad("DB_MAX_CONNS", fmt.Sprintf("a positive number of connections such as %d", app.MaxConns))
	} else {
		cfg.MaxConns = n
	}
	positive := func(key string, def time.Duration) time.Duration {
		d, err := time.ParseDuration(env(getenv, key, def.String()))
		if err != nil || d <= 0 {
			bad(key, "a positive duration such as "+def.String())
		}
		return d
	}
	cfg.RequestTimeout = positive("REQUEST_TIMEOUT", defaultRequestTimeout)
	cfg.Grace = positive("SHUTDOWN_GRACE", defaultGrace)
	cfg.Wait = positive("CONSISTENCY_WAIT", defaultWait)
	if err := cfg.LogLevel.UnmarshalText([]byte(env(getenv, "LOG_LEVEL", "info"))); err != nil {
		bad("LOG_LEVEL", "debug, info, warn or error")
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// defaultSQLitePath is where the service keeps its SQLite file when neither
// DATABASE_URL nor SQLITE_PATH is set: webapp.db under uowkit in the user's
// cache directory (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on Linux,
// ~/Library/Caches on macOS, %LocalAppData% on Windows). It is the user's
// own, so that another user's run neither sees the data nor owns the file
// (as one in a shared /tmp would), it outlives a reboot, and it stays out
// of the working directory, a checkout, say. The path is logged at start.
func defaultSQLitePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("SQLITE_PATH: not set, and no user cache directory for the default (%w): set SQLITE_PATH or DATABASE_URL", err)
	}
	return filepath.Join(dir, "uowkit", "webapp.db"), nil
}

// database is the database cfg names.
func (cfg config) database() app.Database {
	return app.Database{URL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath, MaxConns: cfg.MaxConns}
}

// nats is the NATS server cfg names.
func (cfg config) nats() app.NATS { return app.NATS{URL: cfg.NATSURL, Dir: cfg.natsDir} }

// LogValue lists the settings the service runs with, for the line it logs
// at start; what could hold a secret describes itself without it (the
// database's password: app.Database.LogValue; NATS_URL's: app.NATS.LogValue;
// the replicas are counted, not shown). Tracing logs its own line
// (setupTracing).
func (cfg config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("database", cfg.database()),
		slog.Any("nats", cfg.nats()),
		slog.Int("replicas", len(cfg.ReplicaURLs)),
		slog.Duration("consistency_wait", cfg.Wait),
		slog.String("addr", cfg.Addr),
		slog.Duration("request_timeout", cfg.RequestTimeout),
		slog.Duration("shutdown_grace", cfg.Grace),
		slog.String("log_level", cfg.LogLevel.String()),
	)
}

func env(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// shutdownSignals start a graceful shutdown.
var shutdownSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// run serves the API until one of shutdownSignals arrives, then shuts down
// (see serve), stops the relay and the projector, closes NATS (and stops
// the embedded server) and the pool. ready, when not nil, is called with
// the listening address once signals are being caught.
func run(cfg config, log *slog.Logger, ready func(net.Addr)) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), shutdownSignals...)
	defer stop()

	if cfg.NATSURL == "" {
		if cfg.natsDir, err = os.MkdirTemp("", "webapp-nats-"); err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		defer os.RemoveAll(cfg.natsDir)
	}
	log.Info("webapp starting", slog.Any("config", cfg))
	db, err := app.Open(cfg.database())
	if err != nil {
		return err
	}
	// The pool closes last: after serve, no request is using it.
	defer func() { err = errors.Join(err, db.Close()) }()
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	var replicas []*sqlx.DB
	for i, u := range cfg.ReplicaURLs {
		r, err := app.Open(app.Database{URL: u, MaxConns: cfg.MaxConns})
		if err != nil {
			return fmt.Errorf("REPLICA_URLS #%d: %w", i+1, err)
		}
		defer func() { err = errors.Join(err, r.Close()) }()
		replicas = append(replicas, r)
	}
	tr, err := setupTracing(ctx, cfg.OTLP, log)
	if err != nil {
		return err
	}
	defer func() {
		// Last: the spans of the last requests and of their hooks go out.
		flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = errors.Join(err, tr.shutdown(flush))
	}()
	broker, err := app.OpenBroker(cfg.nats())
	if err != nil {
		return err
	}
	// Closed after the relay and the projector have stopped (below).
	defer func() { err = errors.Join(err, broker.Close()) }()
	log.Info("NATS connected", slog.String("url", broker.URL))
	opts := app.Options{RequestTimeout: cfg.RequestTimeout, Wait: cfg.Wait, Replicas: replicas}
	if tr.observer != nil {
		// The tracer first: the log lines then carry its span.
		opts.Manager = append(opts.Manager, uow.WithObserver(uow.Observers(tr.observer, uow.NewSlogObserver(log))))
	}
	a, err := app.New(db, log, opts)
	if err != nil {
		return err
	}
	if err := app.EnsureStream(ctx, broker.JS); err != nil {
		return err
	}
	// The relay and the projector run until the HTTP server has shut down.
	evctx, stopEvents := context.WithCancel(context.Background())
	defer stopEvents()
	evdone := make(chan error, 1)
	go func() {
		evdone <- a.RunEvents(evctx, broker.JS, app.EventsConfig{DatabaseURL: cfg.DatabaseURL, Log: log})
	}()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		stopEvents()
		return errors.Join(err, <-evdone)
	}
	log.Info("listening", slog.String("addr", ln.Addr().String()))
	if ready != nil {
		ready(ln.Addr())
	}
	err = serve(ctx, &http.Server{Handler: tr.wrap(a.Echo), ReadHeaderTimeout: 10 * time.Second}, ln, log, cfg.Grace)
	// The hooks of the last requests (the relay's wake-up) run after their
	// responses: let them finish (app.HookTimeout bounds each).
	a.Hooks.Wait()
	if cfg.NATSURL == "" {
		// The embedded stream goes with the process: let the relay and the
		// projector finish what was recorded, for a while.
		catchUp(a, broker, log)
	}
	stopEvents()
	return errors.Join(err, <-evdone)
}

// catchUpFor bounds catchUp.
const catchUpFor = 5 * time.Second

// catchUp waits, at most catchUpFor, until every event recorded has been
// published and projected: with an embedded NATS server, whose stream is
// removed at exit, an event published and not yet projected would never be.
// (What the relay has not published stays in the outbox and is published
// at the next start.)
func catchUp(a *app.App, b *app.Broker, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), catchUpFor)
	defer cancel()
	for {
		done, err := a.CaughtUp(ctx, b.JS)
		if err == nil && done {
			return
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Warn("events not all projected at shutdown", slog.Duration("waited", catchUpFor), slog.Any("error", err))
			return
		case <-t.C:
		}
	}
}

// drain bounds the wait for handlers whose requests were cancelled at the
// end of the grace period: they only have to notice and roll back.
const drain = 5 * time.Second

// errShutdown is the cause of the requests' cancellation at the end of the
// grace period.
var errShutdown = errors.New("server shutting down: grace period over")

// serve runs srv on ln until ctx ends, then shuts down gracefully: it stops
// accepting connections, closes those on which no request has started (see
// fresh), and waits, at most grace, for in-flight requests to finish (their
// units commit or roll back). Requests still running then are cancelled, so
// that their units roll back and give their connections back, and serve
// waits at most drain for their handlers to return. It returns an error
// only if the server failed or handlers were still running after that: a
// cancelled request is the shutdown working as intended.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, grace time.Duration) error {
	requests, cancelRequests := context.WithCancelCause(context.Background())
	defer cancelRequests(nil)
	srv.BaseContext = func(net.Listener) context.Context { return requests }
	conns := &fresh{conns: map[net.Conn]struct{}{}, next: srv.ConnState}
	srv.ConnState = conns.track
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", slog.Duration("grace", grace))
	conns.close()
	err := shutdown(srv, grace)
	if serr := <-errs; !errors.Is(serr, http.ErrServerClosed) {
		return errors.Join(serr, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	log.Warn("grace period over: cancelling the requests still in flight (their units roll back)")
	cancelRequests(errShutdown)
	if err := shutdown(srv, drain); err != nil {
		return errors.Join(fmt.Errorf("handlers still running %s after their requests were cancelled", drain), err, srv.Close())
	}
	return nil
}

// shutdown runs srv.Shutdown for at most d.
func shutdown(srv *http.Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return srv.Shutdown(ctx)
}

// fresh tracks the server's connections on which no request has started
// (http.StateNew), to close them at shutdown. http.Server.Shutdown closes
// idle connections at once, but counts a new one as idle only 5 s after it
// was accepted: a client that connected and has sent nothing (a
// preconnecting browser or proxy, a port scanner) would hold the shutdown
// for that long. Closing it loses no request: none has started on it. (A
// request that was arriving on it just then is lost as one arriving on an
// idle keep-alive connection is: the client sees the connection close
// before any answer, and may retry it.)
type fresh struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool                           // close every new connection at once
	next    func(net.Conn, http.ConnState) // the server's own ConnState, or nil
}

// track is the server's ConnState.
func (f *fresh) track(c net.Conn, s http.ConnState) {
	f.mu.Lock()
	switch {
	case s != http.StateNew:
		delete(f.conns, c)
	case f.closing:
		c.Close() // accepted as the listener closed
	default:
		f.conns[c] = struct{}{}
	}
	f.mu.Unlock()
	if f.next != nil {
		f.next(c, s)
	}
}

// close closes the connections on which no request has started, and from
// now on every new one as soon as it is accepted.
func (f *fresh) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing = true
	for c := range f.conns {
		c.Close()
	}
	clear(f.conns)
}
