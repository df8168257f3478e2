package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
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

// OutboxDialect returns the outbox package's name for d.
func (d Dialect) OutboxDialect() outbox.Dialect {
	if d == Postgres {
		return outbox.Postgres
	}
	return outbox.SQLite
}

// InboxTable is the projector's inbox: the ids of the events it applied,
// committed with their effects.
const InboxTable = "projection_inbox"

// migration is one step of the schema, applied once.
type migration struct {
	version string
	body    string
}

// migrationsOf returns the steps of d's schema in order: the embedded files,
// then the outbox's and the projector's inbox's schema (outbox.Schema).
func migrationsOf(d Dialect) ([]migration, error) {
	files, err := fs.Glob(migrations, "migrations/"+d.dir()+"/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []migration
	for _, f := range files {
		b, err := migrations.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{f, string(b)})
	}
	ob, err := outbox.Schema(d.OutboxDialect(), "")
	if err != nil {
		return nil, err
	}
	in, err := outbox.InboxSchema(d.OutboxDialect(), InboxTable)
	if err != nil {
		return nil, err
	}
	return append(out, migration{"outbox/" + outbox.DefaultTable, ob}, migration{"outbox/" + InboxTable, in}), nil
}

// Migrate applies the migrations of db's dialect that have not been applied
// yet, each in a transaction of its own: the embedded files, the outbox's
// tables and the projector's inbox.
func Migrate(ctx context.Context, db *sqlx.DB) error {
	d, err := DialectOf(db)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	steps, err := migrationsOf(d)
	if err != nil {
		return err
	}
	for _, m := range steps {
		if err := migrate(ctx, db, d, m); err != nil {
			return fmt.Errorf("store: migrate %s: %w", m.version, err)
		}
	}
	return nil
}

func migrate(ctx context.Context, db *sqlx.DB, d Dialect, m migration) error {
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
	if err := tx.GetContext(ctx, &done, tx.Rebind(`SELECT count(*) FROM schema_migrations WHERE version = ?`), m.version); err != nil {
		return err
	}
	if done > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.body); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO schema_migrations (version) VALUES (?)`), m.version); err != nil {
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

// Events records domain events in the transactional outbox, through the
// unit in the context (outbox.Record), in the contract's wire form
// (package events). Events of one player, or of one team's creation, share
// an outbox key, so the relay publishes them in commit order.
type Events struct {
	ob   *outbox.Outbox
	wake chan<- struct{}
}

// NewEvents returns the event recorder on ob. When wake is not nil, every
// unit that recorded an event signals it (without blocking) once it has
// committed: give the same channel to the relay (outbox.RelayConfig.Wake)
// where no LISTEN/NOTIFY wakes it (SQLite).
func NewEvents(ob *outbox.Outbox, wake chan<- struct{}) *Events { return &Events{ob: ob, wake: wake} }

// Record gives e an id (outbox.NewID) and records it.
func (r *Events) Record(ctx context.Context, e domain.Event) (domain.Event, error) {
	e.ID = outbox.NewID()
	subject, body, err := events.Encode(e)
	if err != nil {
		return e, err
	}
	key := "team-" + strconv.FormatInt(e.TeamID, 10)
	if e.PlayerID != 0 {
		key = "player-" + strconv.FormatInt(e.PlayerID, 10)
	}
	if err := r.ob.Record(ctx, outbox.Message{ID: e.ID, Subject: subject, Key: key, Payload: body}); err != nil {
		return e, err
	}
	if r.wake != nil {
		return e, uow.AfterCommit(ctx, func(context.Context) error {
			select {
			case r.wake <- struct{}{}:
			default: // a wake-up is pending already
			}
			return nil
		})
	}
	return e, nil
}

// Queries is the read side: the projection's tables. It runs on the unit in
// the context (read-only for GET requests, on a replica when there are
// some), else on the pool.
type Queries struct {
	db *sqlx.DB
	d  Dialect
}

// NewQueries returns the read side over db.
func NewQueries(db *sqlx.DB) *Queries {
	d, _ := DialectOf(db)
	return &Queries{db: db, d: d}
}

type (
	memberRow struct {
		ID   int64  `db:"player_id"`
		Name string `db:"name"`
	}
	historyRow struct {
		EventID    string        `db:"event_id"`
		Type       string        `db:"type"`
		PlayerID   int64         `db:"player_id"`
		PlayerName string        `db:"player_name"`
		From       sql.NullInt64 `db:"from_team_id"`
		To         int64         `db:"to_team_id"`
		OccurredAt int64         `db:"occurred_at"`
	}
)

// Roster returns a team and its players, as projected.
func (r *Queries) Roster(ctx context.Context, id int64) (domain.Roster, error) {
	q := repo.From(ctx, r.db)
	var t teamRow
	if err := q.GetContext(ctx, &t, q.Rebind(`SELECT team_id AS id, name, capacity FROM team_view WHERE team_id = ?`), id); err != nil {
		return domain.Roster{}, notFound(err, "team", id)
	}
	var rows []memberRow
	if err := q.SelectContext(ctx, &rows, q.Rebind(`SELECT player_id, name FROM roster_view WHERE team_id = ? ORDER BY player_id`), id); err != nil {
		return domain.Roster{}, err
	}
	ro := domain.Roster{Team: domain.Team(t), Players: make([]domain.Player, len(rows))}
	for i, p := range rows {
		ro.Players[i] = domain.Player{ID: p.ID, Name: p.Name, TeamID: id}
	}
	return ro, nil
}

// History returns a team's joins and moves, as projected, in the order
// they happened.
func (r *Queries) History(ctx context.Context, id int64) ([]domain.HistoryEntry, error) {
	q := repo.From(ctx, r.db)
	var n int
	if err := q.GetContext(ctx, &n, q.Rebind(`SELECT count(*) FROM team_view WHERE team_id = ?`), id); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, domain.Errorf(domain.NotFound, "team %d not found", id)
	}
	var rows []historyRow
	if err := q.SelectContext(ctx, &rows, q.Rebind(`SELECT event_id, type, player_id, player_name, from_team_id, to_team_id, occurred_at
		FROM team_history WHERE team_id = ? ORDER BY occurred_at, event_id`), id); err != nil {
		return nil, err
	}
	h := make([]domain.HistoryEntry, len(rows))
	for i, r := range rows {
		h[i] = domain.HistoryEntry{EventID: r.EventID, Type: r.Type, PlayerID: r.PlayerID, PlayerName: r.PlayerName,
			FromTeamID: r.From.Int64, ToTeamID: r.To, OccurredAt: time.UnixMicro(r.OccurredAt).UTC()}
	}
	return h, nil
}

// Applied reports whether the projector has applied the event token: its
// inbox holds the id, committed with the event's effects.
func (r *Queries) Applied(ctx context.Context, token string) (bool, error) {
	q := repo.From(ctx, r.db)
	var n int
	err := q.GetContext(ctx, &n, q.Rebind(`SELECT count(*) FROM `+InboxTable+` WHERE message_id = ?`), token)
	return n > 0, err
}

// Lag returns how far the projection is behind the events recorded: the
// recording time of the newest event in the outbox minus that of the
// newest event the projection applied (both stamped by the database's
// clock when the events were recorded), or, when it has applied none, minus
// that of the oldest event in the outbox. Zero when the outbox is empty or
// the projection has applied its newest event. Events are applied about in
// recording order, not exactly: an event whose first delivery failed may
// still be missing behind a lag of zero.
func (r *Queries) Lag(ctx context.Context) (time.Duration, error) {
	q := repo.From(ctx, r.db)
	micros := `recorded_at`
	if r.d == Postgres {
		micros = `(extract(epoch FROM recorded_at) * 1000000)::bigint`
	}
	var head, pos []int64
	if err := q.SelectContext(ctx, &head, `SELECT `+micros+` FROM `+outbox.DefaultTable+` ORDER BY id DESC LIMIT 1`); err != nil {
		return 0, err
	}
	if len(head) == 0 {
		return 0, nil
	}
	if err := q.SelectContext(ctx, &pos, q.Rebind(`SELECT recorded_at FROM projection_position WHERE name = ?`), positionName); err != nil {
		return 0, err
	}
	if len(pos) == 0 {
		if err := q.SelectContext(ctx, &pos, `SELECT `+micros+` FROM `+outbox.DefaultTable+` ORDER BY id LIMIT 1`); err != nil {
			return 0, err
		}
	}
	return max(0, time.Duration(head[0]-pos[0])*time.Microsecond), nil
}

// positionName is the projection's row in projection_position.
const positionName = "teams"

// ErrNotYet is the error of an event the projection cannot apply yet: what
// it builds on (a team's creation, a player's join or earlier move) has
// not been applied. Its delivery is retried later, by when that has.
var ErrNotYet = errors.New("store: event arrived before one it depends on")

// Projection writes the read model: it applies one event through the unit
// in the context (the projector's inbox unit).
type Projection struct {
	db *sqlx.DB
	d  Dialect
}

// NewProjection returns the projection's writer on db.
func NewProjection(db *sqlx.DB) *Projection {
	d, _ := DialectOf(db)
	return &Projection{db: db, d: d}
}

// Apply applies e, recorded at recordedAt (the outbox's clock; zero if
// unknown). An event of an unknown type changes nothing. It fails with
// ErrNotYet when e depends on an event not applied yet.
func (p *Projection) Apply(ctx context.Context, e domain.Event, recordedAt time.Time) error {
	q := repo.From(ctx, p.db)
	exec := func(query string, args ...any) error {
		_, err := q.ExecContext(ctx, q.Rebind(query), args...)
		return err
	}
	teamExists := func(id int64) error {
		var n int
		if err := q.GetContext(ctx, &n, q.Rebind(`SELECT count(*) FROM team_view WHERE team_id = ?`), id); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: %s %s: team %d", ErrNotYet, e.Type, e.ID, id)
		}
		return nil
	}
	history := `INSERT INTO team_history (team_id, event_id, type, player_id, player_name, from_team_id, to_team_id, occurred_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	at := e.OccurredAt.UnixMicro()
	switch e.Type {
	case domain.TeamCreated:
		if err := exec(`INSERT INTO team_view (team_id, name, capacity) VALUES (?, ?, ?)`, e.TeamID, e.TeamName, e.Capacity); err != nil {
			return err
		}
	case domain.PlayerJoined:
		if err := teamExists(e.TeamID); err != nil {
			return err
		}
		if err := exec(`INSERT INTO roster_view (player_id, team_id, name) VALUES (?, ?, ?)`, e.PlayerID, e.TeamID, e.PlayerName); err != nil {
			return err
		}
		if err := exec(history, e.TeamID, e.ID, e.Type, e.PlayerID, e.PlayerName, nil, e.TeamID, at); err != nil {
			return err
		}
	case domain.PlayerMoved:
		var cur memberRow
		var team int64
		err := q.QueryRowxContext(ctx, q.Rebind(`SELECT team_id, name FROM roster_view WHERE player_id = ?`), e.PlayerID).Scan(&team, &cur.Name)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && team != e.FromTeamID) {
			return fmt.Errorf("%w: %s %s: player %d not on team %d yet", ErrNotYet, e.Type, e.ID, e.PlayerID, e.FromTeamID)
		}
		if err != nil {
			return err
		}
		if err := teamExists(e.ToTeamID); err != nil {
			return err
		}
		if err := exec(`UPDATE roster_view SET team_id = ? WHERE player_id = ?`, e.ToTeamID, e.PlayerID); err != nil {
			return err
		}
		for _, t := range []int64{e.FromTeamID, e.ToTeamID} {
			if err := exec(history, t, e.ID, e.Type, e.PlayerID, cur.Name, e.FromTeamID, e.ToTeamID, at); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	if recordedAt.IsZero() {
		return nil
	}
	upsert := `INSERT INTO projection_position (name, recorded_at) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET recorded_at = max(projection_position.recorded_at, excluded.recorded_at)`
	if p.d == Postgres {
		upsert = strings.Replace(upsert, "= max(", "= greatest(", 1)
	}
	return exec(upsert, positionName, recordedAt.UnixMicro())
}
