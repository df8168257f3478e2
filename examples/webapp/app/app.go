package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/lib/pq"
	"modernc.org/sqlite"

	"github.com/uowkit/uowkit/examples/webapp/httpapi"
	"github.com/uowkit/uowkit/examples/webapp/projection"
	"github.com/uowkit/uowkit/examples/webapp/service"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowecho"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// App is the wired service.
type App struct {
	// Echo serves the HTTP API.
	Echo *echo.Echo
	// Hooks counts the goroutines that run the units' hooks (the relay's
	// wake-up) after responses: wait for it once the server has shut down.
	Hooks *sync.WaitGroup
	// Manager runs the units of work.
	Manager *uow.Manager
	// Projector maintains the read model from the events (RunEvents runs
	// it); its Signal wakes the reads waiting for a consistency token.
	Projector *projection.Projector

	db      *sqlx.DB
	dialect store.Dialect
	wake    chan struct{} // the relay's in-process wake-up (SQLite)
}

// MaxConns is the default size of the PostgreSQL pool (Database.MaxConns).
const MaxConns = 20

// Database says which database the service uses: PostgreSQL when URL is
// set, else a SQLite file. Logged (slog.Any), it describes itself without
// its password (see LogValue).
type Database struct {
	// URL is PostgreSQL's connection string, a postgres:// URL or
	// key=value pairs (lib/pq's syntax; PG* environment variables fill in
	// what it leaves out). Empty: SQLite.
	URL string
	// SQLitePath is the SQLite file, created (with its directory) if
	// missing. Used when URL is empty.
	SQLitePath string
	// MaxConns is the size of the PostgreSQL pool; 0 means MaxConns.
	// SQLite always gets one connection (see Open).
	MaxConns int
}

// maxConns returns the PostgreSQL pool's size.
func (d Database) maxConns() int {
	if d.MaxConns > 0 {
		return d.MaxConns
	}
	return MaxConns
}

// LogValue describes d for the log: PostgreSQL's host, port, database,
// user and pool size, never its password or the rest of URL (which may
// carry it, also as a query parameter); or SQLite's absolute path.
func (d Database) LogValue() slog.Value {
	if d.URL == "" {
		path, err := filepath.Abs(d.SQLitePath)
		if err != nil {
			path = d.SQLitePath
		}
		return slog.GroupValue(slog.String("driver", "sqlite"), slog.String("path", path), slog.Int("max_conns", 1))
	}
	c, err := pq.NewConfig(d.URL)
	if err != nil {
		// The error could quote the URL: say only that it is unusable.
		return slog.GroupValue(slog.String("driver", "postgres"), slog.String("error", "DATABASE_URL cannot be parsed"))
	}
	return slog.GroupValue(slog.String("driver", "postgres"),
		slog.String("host", c.Host), slog.Int("port", int(c.Port)),
		slog.String("name", c.Database), slog.String("user", c.User),
		slog.Int("max_conns", d.maxConns()))
}

// Open opens PostgreSQL at d.URL, or, when it is empty, the SQLite file at
// d.SQLitePath (created if missing).
//
// Either pool is opened on a uow.Guard connector: a statement sent on the
// pool itself, in autocommit, while its context carries a unit (a
// repository handed the pool where the unit's handle belonged) fails with
// uow.ErrAutocommit instead of committing at once whatever becomes of the
// unit. Outside a unit (migrations, tools) the pool works as usual.
func Open(d Database) (*sqlx.DB, error) {
	if d.MaxConns < 0 {
		return nil, fmt.Errorf("app: MaxConns %d: want a positive pool size (0: %d)", d.MaxConns, MaxConns)
	}
	if d.URL != "" {
		c, err := pq.NewConnector(d.URL)
		if err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		db := sqlx.NewDb(sql.OpenDB(uow.Guard(c)), "postgres")
		// A bounded pool: a burst of requests queues for a connection
		// instead of exhausting the server's (100 by default), and the
		// connections stay open between bursts (database/sql keeps only 2
		// idle ones by default, and PostgreSQL starts a process for each
		// new one).
		db.SetMaxOpenConns(d.maxConns())
		db.SetMaxIdleConns(d.maxConns())
		return db, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.SQLitePath), 0o700); err != nil {
		return nil, fmt.Errorf("SQLITE_PATH: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	c, err := sqlite.NewConnector("file:" + d.SQLitePath + "?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("SQLITE_PATH: %w", err)
	}
	db := sqlx.NewDb(sql.OpenDB(uow.Guard(c)), "sqlite")
	// SQLite allows one writer at a time. One connection serialises the
	// units in the pool instead of failing them with SQLITE_BUSY; a request
	// holds it only from its first statement to its decision.
	db.SetMaxOpenConns(1)
	return db, nil
}

// RetryPolicy re-runs a unit that failed with a deadlock or a serialization
// failure (at any statement or at COMMIT), or that lost its connection at
// BEGIN, on a fresh unit: a few attempts with jittered backoff, and never
// for longer than a client would wait. It is the manager's default, so it
// is the policy of every request's unit (the middleware, in buffered mode,
// re-runs the whole request by it) and of every outermost Do outside a
// request. When it gives up the client gets 503 with Retry-After.
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

// HookTimeout bounds the after-commit hooks of a request (the relay's
// wake-up), which the middleware runs once the response has gone,
// on a goroutine of their own.
const HookTimeout = 10 * time.Second

// Options are the service's settings beyond its database. The zero value
// is the service without a request deadline.
type Options struct {
	// RequestTimeout, when positive, bounds each request: once it passes,
	// the request's unit rolls back at once, the statement it runs or the
	// lock or pool connection it waits for is given up, and the client gets
	// 504 {"error":"timeout"} (nethttp.Options.Timeout).
	RequestTimeout time.Duration
	// Manager holds manager options, applied after the app's own (an
	// Observer given here replaces the slog one).
	Manager []uow.ManagerOption
	// Wait bounds how long a read with a consistency token waits for the
	// projection (0: service.DefaultWait).
	Wait time.Duration
	// Replicas are streaming replicas of the PostgreSQL database: read-only
	// units (the GET requests, the reads waiting for a token) run on them
	// (uow.WithReplicas).
	Replicas []*sqlx.DB
}

// New wires the service over db, whose schema must be migrated
// (store.Migrate).
//
// Every request gets an id (httpapi.RequestID) and an access log line
// (httpapi.AccessLog) carrying it, as do the log lines of its units
// (uow.NewSlogObserver).
func New(db *sqlx.DB, log *slog.Logger, o Options) (*App, error) {
	if o.RequestTimeout < 0 {
		return nil, fmt.Errorf("app: negative RequestTimeout %s", o.RequestTimeout)
	}
	d, err := store.DialectOf(db)
	if err != nil {
		return nil, err
	}
	mopts := []uow.ManagerOption{
		uow.WithObserver(uow.NewSlogObserver(log)), // retries at Warn, failures at Error
		// The request's unit, which the middleware retries, and a command
		// run outside a request (a job, a CLI), an outermost Do that
		// retries by itself, share this policy. Inside a request the
		// service's Do calls join the request's unit and never retry on
		// their own.
		uow.WithDefaults(uow.Retry(RetryPolicy)),
	}
	if len(o.Replicas) > 0 {
		if d != store.Postgres {
			return nil, errors.New("app: replicas need PostgreSQL")
		}
		mopts = append(mopts, uow.WithReplicas(db, uow.Replicas{DBs: o.Replicas}))
	}
	m := uow.New(db, append(mopts, o.Manager...)...)
	ob, err := outbox.New(db, d.OutboxDialect(), "")
	if err != nil {
		return nil, err
	}
	var wake chan struct{}
	if d == store.SQLite {
		// No LISTEN/NOTIFY: the units that record events wake the relay
		// after their commit.
		wake = make(chan struct{}, 1)
	}
	evs := store.NewEvents(ob, wake)
	// Repositories are bound explicitly to each unit's handle on db.
	runner := uow.NewRunner(m, func(u *uow.Unit) service.Repos {
		q := u.On(db)
		return service.Repos{
			Teams:   store.NewTeams(q, d),
			Players: store.NewPlayers(q, d),
			Rosters: store.NewRosters(q),
			Events:  evs,
		}
	})
	proj, err := projection.New(db, m, log)
	if err != nil {
		return nil, err
	}
	svc := service.New(runner, store.NewQueries(db), service.Options{Wait: o.Wait, Signal: proj.Signal()})

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Outermost first: the request id, then the access log, which sees the
	// final status of everything inside it.
	e.Use(httpapi.RequestID(), httpapi.AccessLog(log), httpapi.Recover())
	hooks := &sync.WaitGroup{}
	e.Use(uowecho.TransactionWithOptions(m, nethttp.Options{
		UnitOptions:     nethttp.ReadOnlySafeMethods, // the read side runs read-only
		Timeout:         o.RequestTimeout,
		Buffer:          Buffer,
		HookTimeout:     HookTimeout,
		HookGroup:       hooks,
		FailureResponse: httpapi.UnitFailure,
		ErrorHandler: func(r *http.Request, err error) {
			log.Log(r.Context(), unitErrorLevel(err), "unit not committed",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err),
				slog.String("id", r.Header.Get(echo.HeaderXRequestID)))
		},
	}))
	httpapi.Register(e, svc, log)
	return &App{Echo: e, Hooks: hooks, Manager: m, Projector: proj, db: db, dialect: d, wake: wake}, nil
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
	_ service.Signal           = (*projection.Signal)(nil)
	_ service.Queries          = (*store.Queries)(nil)
	_ httpapi.Service          = (*service.Service)(nil)
)
