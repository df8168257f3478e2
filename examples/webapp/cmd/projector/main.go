package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/uow"
)

func main() {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("LOG_LEVEL"))); err != nil && os.Getenv("LOG_LEVEL") != "" {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, log); err != nil {
		log.Error("projector stopped", slog.Any("error", err))
		os.Exit(1)
	}
	log.Info("projector stopped")
}

// run projects the events until ctx ends.
func run(ctx context.Context, getenv func(string) string, log *slog.Logger) (err error) {
	d := app.Database{URL: getenv("DATABASE_URL"), SQLitePath: getenv("SQLITE_PATH")}
	n := app.NATS{URL: getenv("NATS_URL")}
	if n.URL == "" || (d.URL == "" && d.SQLitePath == "") {
		return errors.New("NATS_URL and DATABASE_URL (or SQLITE_PATH) are required")
	}
	log.Info("projector starting", slog.Any("database", d), slog.Any("nats", n))
	db, err := app.Open(d)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	b, err := app.OpenBroker(n)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.Close()) }()
	a, err := app.New(db, log, app.Options{Manager: []uow.ManagerOption{uow.WithObserver(uow.NewSlogObserver(log))}})
	if err != nil {
		return err
	}
	return a.RunEvents(ctx, b.JS, app.EventsConfig{NoRelay: true, Log: log})
}
