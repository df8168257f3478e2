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
	"syscall"
	"time"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/uow"
)

func main() {
	var level slog.Level
	if err := level.UnmarshalText([]byte(env(os.Getenv, "LOG_LEVEL", "info"))); err != nil {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := configFrom(os.Getenv)
	if err == nil {
		err = run(cfg, log, nil)
	}
	if err != nil {
		log.Error("webapp stopped", slog.Any("error", err))
		os.Exit(1)
	}
	log.Info("webapp stopped")
}

// config is the service's configuration, read from the environment.
type config struct {
	DatabaseURL string        // DATABASE_URL; empty: SQLite
	SQLitePath  string        // SQLITE_PATH
	Addr        string        // ADDR
	Grace       time.Duration // SHUTDOWN_GRACE: how long in-flight requests may take to finish
	OTLP        string        // OTEL_EXPORTER_OTLP_ENDPOINT: where to export traces; empty: no tracing
}

func configFrom(getenv func(string) string) (config, error) {
	grace, err := time.ParseDuration(env(getenv, "SHUTDOWN_GRACE", "15s"))
	if err != nil || grace <= 0 {
		return config{}, fmt.Errorf("SHUTDOWN_GRACE: want a positive duration such as 15s, got %q", getenv("SHUTDOWN_GRACE"))
	}
	return config{
		DatabaseURL: getenv("DATABASE_URL"),
		SQLitePath:  env(getenv, "SQLITE_PATH", filepath.Join(os.TempDir(), "uowkit-webapp.db")),
		Addr:        env(getenv, "ADDR", ":8080"),
		Grace:       grace,
		OTLP:        getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
	}, nil
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
// (see serve) and closes the pool. ready, when not nil, is called with the
// listening address once signals are being caught.
func run(cfg config, log *slog.Logger, ready func(net.Addr)) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), shutdownSignals...)
	defer stop()

	db, err := app.Open(cfg.DatabaseURL, cfg.SQLitePath)
	if err != nil {
		return err
	}
	// The pool closes last: after serve, no request is using it.
	defer func() { err = errors.Join(err, db.Close()) }()
	if cfg.DatabaseURL == "" {
		log.Info("no DATABASE_URL: using SQLite", slog.String("path", cfg.SQLitePath))
	}
	if err := store.Migrate(ctx, db); err != nil {
		return err
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
	var opts []uow.ManagerOption
	if tr.observer != nil {
		// The tracer first: the log lines then carry its span.
		opts = append(opts, uow.WithObserver(uow.Observers(tr.observer, uow.NewSlogObserver(log))))
	}
	a, err := app.New(db, log, opts...)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	log.Info("listening", slog.String("addr", ln.Addr().String()))
	if ready != nil {
		ready(ln.Addr())
	}
	err = serve(ctx, &http.Server{Handler: tr.wrap(a.Echo), ReadHeaderTimeout: 10 * time.Second}, ln, log, cfg.Grace)
	// The hooks of the last requests (the events' publication) run after
	// their responses: let them finish (app.HookTimeout bounds each).
	a.Hooks.Wait()
	return err
}

// drain bounds the wait for handlers whose requests were cancelled at the
// end of the grace period: they only have to notice and roll back.
const drain = 5 * time.Second

// errShutdown is the cause of the requests' cancellation at the end of the
// grace period.
var errShutdown = errors.New("server shutting down: grace period over")

// serve runs srv on ln until ctx ends, then shuts down gracefully: it stops
// accepting connections and waits, at most grace, for in-flight requests to
// finish (their units commit or roll back). Requests still running then are
// cancelled, so that their units roll back and give their connections back,
// and serve waits at most drain for their handlers to return. It returns an
// error only if the server failed or handlers were still running after
// that: a cancelled request is the shutdown working as intended.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, grace time.Duration) error {
	requests, cancelRequests := context.WithCancelCause(context.Background())
	defer cancelRequests(nil)
	srv.BaseContext = func(net.Listener) context.Context { return requests }
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", slog.Duration("grace", grace))
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
