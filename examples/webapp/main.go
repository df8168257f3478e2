package main

import (
	"context"
	"errors"
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
)

func main() {
	var level slog.Level
	if err := level.UnmarshalText([]byte(env("LOG_LEVEL", "info"))); err != nil {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(log); err != nil {
		log.Error("webapp stopped", slog.Any("error", err))
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dbURL := os.Getenv("DATABASE_URL")
	sqlitePath := env("SQLITE_PATH", filepath.Join(os.TempDir(), "uowkit-webapp.db"))
	db, err := app.Open(dbURL, sqlitePath)
	if err != nil {
		return err
	}
	defer db.Close()
	if dbURL == "" {
		log.Info("no DATABASE_URL: using SQLite", slog.String("path", sqlitePath))
	}
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	a, err := app.New(db, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", env("ADDR", ":8080"))
	if err != nil {
		return err
	}
	log.Info("listening", slog.String("addr", ln.Addr().String()))
	return serve(ctx, &http.Server{Handler: a.Echo, ReadHeaderTimeout: 10 * time.Second}, ln, log, 15*time.Second)
}

// serve runs srv on ln until ctx ends, then shuts down gracefully: it stops
// accepting connections and waits, at most grace, for in-flight requests to
// finish (their units commit or roll back). The caller closes the pools
// after.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, grace time.Duration) error {
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-errs; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
