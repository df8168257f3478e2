package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/repo"
)

// Dialect is the SQL flavour of a database.
type Dialect int

// The supported dialects.
const (
	Postgres Dialect = iota + 1
	SQLite
)

// DialectOf returns db's dialect from its driver name.
func DialectOf(db *sqlx.DB) (Dialect, error) {
	switch db.DriverName() {
	case "postgres", "pgx":
		return Postgres, nil
	case "sqlite":
		return SQLite, nil
	}
	return 0, fmt.Errorf("store: unsupported driver %q", db.DriverName())
}

func (d Dialect) dir() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// lock is the row-locking clause: PostgreSQL locks the rows it reads;
// SQLite has no row locks, its writers are serialised by the database lock
// (a single connection, see app.Open).
func (d Dialect) lock() string {
	if d == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

//go:embed migrations
var migrations embed.FS

// Migrate applies the embedded migrations of db's dialect that have not been
// applied yet, each in a transaction of its own.
func Migrate(ctx context.Context, db *sqlx.DB) error {
	d, err := DialectOf(db)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	files, err := fs.Glob(migrations, "migrations/"+d.dir()+"/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		if err := migrate(ctx, db, d, f); err != nil {
			return fmt.Errorf("store: migrate %s: %w", f, err)
		}
	}
	return nil
}

func migrate(ctx context.Context, db *sqlx.DB, d Dialect, file string) error {
	body, err := migrations.ReadFile(file)
	if err != nil {
		return err
	}
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if d == Postgres {
		// Two instances starting at once apply each migration once.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(727274)`); err != nil {
			return err
		}
	}
	var done int
	if err := tx.GetContext(ctx, &done, tx.Rebind(`SELECT count(*) FROM schema_migrations WHERE version = ?`), file); err != nil {
		return err
	}
	if done > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO schema_migrations (version) VALUES (?)`), file); err != nil {
		return err
	}
	return tx.Commit()
}

// Rows as the tables hold them. The domain's types carry no column names;
// these convert to them (same fields, so a plain conversion does).
type (
	teamRow struct {
		ID       int64  `db:"id"`
		Name     string `db:"name"`
		Capacity int    `db:"capacity"`
	}
	playerRow struct {
		ID     int64  `db:"id"`
		Name   string `db:"name"`
		TeamID int64  `db:"team_id"`
	}
)

func notFound(err error, what string, id int64) error {
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Errorf(domain.NotFound, "%s %d not found", what, id)
	}
	return err
}

// Teams stores teams.
type Teams struct {
	q repo.Querier
	d Dialect
}

// NewTeams returns the team repository on q.
func NewTeams(q repo.Querier, d Dialect) *Teams { return &Teams{q: q, d: d} }

// Create inserts t and returns it with its id.
func (r *Teams) Create(ctx context.Context, t domain.Team) (domain.Team, error) {
	err := r.q.GetContext(ctx, &t.ID, r.q.Rebind(`INSERT INTO teams (name, capacity) VALUES (?, ?) RETURNING id`), t.Name, t.Capacity)
	return t, err
}

// Lock returns the team, locked until the unit ends.
func (r *Teams) Lock(ctx context.Context, id int64) (domain.Team, error) {
	var t teamRow
	err := r.q.GetContext(ctx, &t, r.q.Rebind(`SELECT id, name, capacity FROM teams WHERE id = ?`+r.d.lock()), id)
	return domain.Team(t), notFound(err, "team", id)
}

// Players stores players.
type Players struct {
	q repo.Querier
	d Dialect
}

// NewPlayers returns the player repository on q.
func NewPlayers(q repo.Querier, d Dialect) *Players { return &Players{q: q, d: d} }

// Create inserts p and returns it with its id.
func (r *Players) Create(ctx context.Context, p domain.Player) (domain.Player, error) {
	err := r.q.GetContext(ctx, &p.ID, r.q.Rebind(`INSERT INTO players (name, team_id) VALUES (?, ?) RETURNING id`), p.Name, p.TeamID)
	return p, err
}

// Lock returns the player, locked until the unit ends.
func (r *Players) Lock(ctx context.Context, id int64) (domain.Player, error) {
	var p playerRow
	err := r.q.GetContext(ctx, &p, r.q.Rebind(`SELECT id, name, team_id FROM players WHERE id = ?`+r.d.lock()), id)
	return domain.Player(p), notFound(err, "player", id)
}

// SetTeam moves a player.
func (r *Players) SetTeam(ctx context.Context, player, team int64) error {
	_, err := r.q.ExecContext(ctx, r.q.Rebind(`UPDATE players SET team_id = ? WHERE id = ?`), team, player)
	return err
}

// Rosters maintains the team_rosters projection.
type Rosters struct{ q repo.Querier }

// NewRosters returns the roster projection on q.
func NewRosters(q repo.Querier) *Rosters { return &Rosters{q: q} }

// Init starts a team's roster at zero players.
func (r *Rosters) Init(ctx context.Context, team int64) error {
	_, err := r.q.ExecContext(ctx, r.q.Rebind(`INSERT INTO team_rosters (team_id, player_count) VALUES (?, 0)`), team)
	return err
}

// Count returns a team's number of players.
func (r *Rosters) Count(ctx context.Context, team int64) (int, error) {
	var n int
	err := r.q.GetContext(ctx, &n, r.q.Rebind(`SELECT player_count FROM team_rosters WHERE team_id = ?`), team)
	return n, notFound(err, "team", team)
}

// Add changes a team's number of players by delta.
func (r *Rosters) Add(ctx context.Context, team int64, delta int) error {
	_, err := r.q.ExecContext(ctx, r.q.Rebind(`UPDATE team_rosters SET player_count = player_count + ? WHERE team_id = ?`), delta, team)
	return err
}

// Events appends domain events.
type Events struct{ q repo.Querier }

// NewEvents returns the event log on q.
func NewEvents(q repo.Querier) *Events { return &Events{q: q} }

// Append records e and returns it with its id.
func (r *Events) Append(ctx context.Context, e domain.Event) (domain.Event, error) {
	e.At = time.Now().UTC()
	err := r.q.GetContext(ctx, &e.ID, r.q.Rebind(`INSERT INTO events (type, payload) VALUES (?, ?) RETURNING id`), e.Type, e.Payload)
	return e, err
}

// Queries is the read side. It runs on the request's unit when there is one
// (read-only for GET requests), else on the pool.
type Queries struct{ db *sqlx.DB }

// NewQueries returns the read side over db.
func NewQueries(db *sqlx.DB) *Queries { return &Queries{db: db} }

// Roster returns a team and its players.
func (r *Queries) Roster(ctx context.Context, id int64) (domain.Roster, error) {
	q := repo.From(ctx, r.db)
	var t teamRow
	if err := q.GetContext(ctx, &t, q.Rebind(`SELECT id, name, capacity FROM teams WHERE id = ?`), id); err != nil {
		return domain.Roster{}, notFound(err, "team", id)
	}
	var rows []playerRow
	if err := q.SelectContext(ctx, &rows, q.Rebind(`SELECT id, name, team_id FROM players WHERE team_id = ? ORDER BY id`), id); err != nil {
		return domain.Roster{}, err
	}
	ro := domain.Roster{Team: domain.Team(t), Players: make([]domain.Player, len(rows))}
	for i, p := range rows {
		ro.Players[i] = domain.Player(p)
	}
	return ro, nil
}
