package app

import (
	"context"
	"errors"
	"log/slog"
	"net/url"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	_ "github.com/lib/pq"  // PostgreSQL
	_ "modernc.org/sqlite" // SQLite, pure Go

	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/examples/webapp/httpapi"
	"github.com/uowkit/uowkit/examples/webapp/service"
	"github.com/uowkit/uowkit/examples/webapp/store"
	uowecho "github.com/uowkit/uowkit/middleware/echo"
	"github.com/uowkit/uowkit/uow"
)

// App is the wired service.
type App struct {
	// Echo serves the HTTP API.
	Echo *echo.Echo
	// Bus delivers committed domain events.
	Bus *events.Bus
	// Manager runs the units of work.
	Manager *uow.Manager
}

// Open opens PostgreSQL at databaseURL, or, when it is empty, the SQLite
// file at sqlitePath (created if missing).
func Open(databaseURL, sqlitePath string) (*sqlx.DB, error) {
	if databaseURL != "" {
		return sqlx.Open("postgres", databaseURL)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	db, err := sqlx.Open("sqlite", "file:"+sqlitePath+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// SQLite allows one writer at a time. One connection serialises the
	// units in the pool instead of failing them with SQLITE_BUSY; a request
	// holds it only from its first statement to its decision.
	db.SetMaxOpenConns(1)
	return db, nil
}

// New wires the service over db, whose schema must be migrated
// (store.Migrate).
func New(db *sqlx.DB, log *slog.Logger, opts ...uow.ManagerOption) (*App, error) {
	d, err := store.DialectOf(db)
	if err != nil {
		return nil, err
	}
	m := uow.New(db, append([]uow.ManagerOption{uow.WithObserver(uow.NewSlogObserver(log))}, opts...)...)
	// Repositories are bound explicitly to each unit's handle.
	runner := uow.NewRunner(m, func(u *uow.Unit) service.Repos {
		q := u.DB()
		return service.Repos{
			Teams:   store.NewTeams(q, d),
			Players: store.NewPlayers(q, d),
			Rosters: store.NewRosters(q),
			Events:  store.NewEvents(q),
		}
	})
	bus := &events.Bus{}
	bus.Subscribe(events.Logger(log))
	svc := service.New(runner, store.NewQueries(db), bus)

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover())
	e.Use(uowecho.MiddlewareWithConfig(uowecho.Config{
		Manager:     m,
		UnitOptions: uowecho.ReadOnlySafeMethods, // the read side runs read-only
		ErrorHandler: func(c echo.Context, err error) {
			level := slog.LevelError
			if errors.Is(err, context.Canceled) && !errors.Is(err, uow.ErrPartialCommit) {
				level = slog.LevelInfo // the client left: rolled back, nothing to fix
			}
			log.Log(c.Request().Context(), level, "unit not committed", slog.String("path", c.Request().URL.Path), slog.Any("error", err))
		},
	}))
	httpapi.Register(e, svc, log)
	return &App{Echo: e, Bus: bus, Manager: m}, nil
}

// Compile-time checks that the store implements what the service needs.
var (
	_ service.TeamRepository   = (*store.Teams)(nil)
	_ service.PlayerRepository = (*store.Players)(nil)
	_ service.RosterRepository = (*store.Rosters)(nil)
	_ service.EventRepository  = (*store.Events)(nil)
	_ service.Queries          = (*store.Queries)(nil)
	_ httpapi.Service          = (*service.Service)(nil)
)
