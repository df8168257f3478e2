package app

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	_ "github.com/lib/pq"  // PostgreSQL
	_ "modernc.org/sqlite" // SQLite, pure Go

	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/examples/webapp/httpapi"
	"github.com/uowkit/uowkit/examples/webapp/service"
	"github.com/uowkit/uowkit/examples/webapp/store"
	uowecho "github.com/uowkit/uowkit/middleware/echo"
	"github.com/uowkit/uowkit/retry"
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

// MaxConns is the size of the PostgreSQL pool.
const MaxConns = 20

// Open opens PostgreSQL at databaseURL, or, when it is empty, the SQLite
// file at sqlitePath (created if missing).
func Open(databaseURL, sqlitePath string) (*sqlx.DB, error) {
	if databaseURL != "" {
		db, err := sqlx.Open("postgres", databaseURL)
		if err != nil {
			return nil, err
		}
		// A bounded pool: a burst of requests queues for a connection
		// instead of exhausting the server's (100 by default), and the
		// connections stay open between bursts (database/sql keeps only 2
		// idle ones by default, and PostgreSQL starts a process for each
		// new one).
		db.SetMaxOpenConns(MaxConns)
		db.SetMaxIdleConns(MaxConns)
		return db, nil
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

// RetryPolicy re-runs a request whose unit failed with a deadlock or a
// serialization failure (at any statement or at COMMIT) on a fresh unit: a
// few attempts with jittered backoff, and never for longer than a client
// would wait. When it gives up the client gets 503 with Retry-After.
var RetryPolicy = retry.Policy{
	MaxAttempts: 5,
	BaseDelay:   10 * time.Millisecond,
	MaxDelay:    250 * time.Millisecond,
	MaxElapsed:  5 * time.Second,
}

// Buffer is how much of a response the middleware holds back until the
// unit is finished, so that a failed commit or a retry can still replace
// it, and how large a request body it keeps to replay. It is larger than
// any response of this API (a full team: MaxCapacity players with names of
// MaxName characters, escaped) and than httpapi.MaxBody.
const Buffer = 1 << 20

// New wires the service over db, whose schema must be migrated
// (store.Migrate). opts come after the app's own manager options (an
// Observer given here replaces the slog one).
func New(db *sqlx.DB, log *slog.Logger, opts ...uow.ManagerOption) (*App, error) {
	d, err := store.DialectOf(db)
	if err != nil {
		return nil, err
	}
	m := uow.New(db, append([]uow.ManagerOption{
		uow.WithObserver(uow.NewSlogObserver(log)), // retries at Warn, failures at Error
		// A command run outside a request (a job, a CLI) is an outermost
		// Do, and retries by itself; inside a request it joins the
		// request's unit, which the middleware retries.
		uow.WithDefaults(uow.Retry(RetryPolicy)),
	}, opts...)...)
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
	e.Use(httpapi.Recover())
	policy := RetryPolicy
	e.Use(uowecho.MiddlewareWithConfig(uowecho.Config{
		Manager:         m,
		UnitOptions:     uowecho.ReadOnlySafeMethods, // the read side runs read-only
		Buffer:          Buffer,
		Retry:           &policy,
		FailureResponse: httpapi.UnitFailure,
		ErrorHandler: func(c echo.Context, err error) {
			r := c.Request()
			log.Log(r.Context(), unitErrorLevel(err), "unit not committed",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
		},
	}))
	httpapi.Register(e, svc, log)
	return &App{Echo: e, Bus: bus, Manager: m}, nil
}

// unitErrorLevel says how bad a unit's failure to commit is: a request whose
// context was cancelled (the client left, the server is shutting down) was
// rolled back as it should be; a passed deadline is a warning; anything
// else, and any commit that may be partly or wholly durable, is an error.
func unitErrorLevel(err error) slog.Level {
	switch {
	case errors.Is(err, uow.ErrPartialCommit), errors.Is(err, uow.ErrCommitUnknown):
		return slog.LevelError
	case errors.Is(err, context.Canceled):
		return slog.LevelInfo
	case errors.Is(err, context.DeadlineExceeded):
		return slog.LevelWarn
	}
	return slog.LevelError
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
