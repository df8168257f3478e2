package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	_ "github.com/lib/pq"

	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/outbox"
)

var errFull = errors.New("team is full")

func main() {
	db, err := sqlx.Open("postgres", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	// The example service's pool (app.Open), for a fair comparison.
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	if err := store.Migrate(context.Background(), db); err != nil {
		log.Fatal(err)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover())
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.POST("/teams/:id/players", func(c echo.Context) error { return join(c, db) })
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8081"
	}
	srv := &http.Server{Addr: addr, Handler: e, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

type player struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	TeamID int64  `json:"team_id"`
}

// join is the example's POST /teams/{id}/players: the same validation, the
// same answers.
func join(c echo.Context, db *sqlx.DB) error {
	team, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || team <= 0 {
		return fail(c, http.StatusBadRequest, fmt.Sprintf("invalid id %q", c.Param("id")))
	}
	var req struct {
		Name string `json:"name"`
	}
	d := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<16))
	d.DisallowUnknownFields()
	if d.Decode(&req) != nil {
		return fail(c, http.StatusBadRequest, "invalid JSON body")
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return fail(c, http.StatusBadRequest, "invalid JSON body: trailing data")
	}
	p, err := domain.NewPlayer(req.Name, team)
	if err != nil {
		return fail(c, http.StatusBadRequest, err.Error())
	}
	p.ID, err = addPlayer(c.Request().Context(), db, p.Name, team)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fail(c, http.StatusNotFound, fmt.Sprintf("team %d not found", team))
	case errors.Is(err, errFull):
		return fail(c, http.StatusConflict, fmt.Sprintf("team %d is full", team))
	case err != nil:
		log.Printf("POST %s: %v", c.Request().URL.Path, err)
		return fail(c, http.StatusInternalServerError, "internal error")
	}
	return c.JSON(http.StatusCreated, player(p))
}

func fail(c echo.Context, status int, msg string) error {
	return c.JSON(status, map[string]string{"error": msg})
}

// addPlayer runs the statements the example service sends for a join, in
// the same order, at the same (default) isolation level, in one transaction
// begun, committed and rolled back by hand.
func addPlayer(ctx context.Context, db *sqlx.DB, name string, team int64) (int64, error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var t struct {
		ID       int64  `db:"id"`
		Name     string `db:"name"`
		Capacity int    `db:"capacity"`
	}
	if err := tx.GetContext(ctx, &t, `SELECT id, name, capacity FROM teams WHERE id = $1 FOR UPDATE`, team); err != nil {
		return 0, err
	}
	var taken int
	if err := tx.GetContext(ctx, &taken, `SELECT player_count FROM team_rosters WHERE team_id = $1`, team); err != nil {
		return 0, err
	}
	if taken >= t.Capacity {
		return 0, errFull
	}
	var id int64
	if err := tx.GetContext(ctx, &id, `INSERT INTO players (name, team_id) VALUES ($1, $2) RETURNING id`, name, team); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE team_rosters SET player_count = player_count + $1 WHERE team_id = $2`, 1, team); err != nil {
		return 0, err
	}
	// The event, in the outbox, with the statement outbox.Record sends for
	// a keyed message on PostgreSQL. (No relay runs: the rows stay.)
	e := domain.Event{ID: outbox.NewID(), Type: domain.PlayerJoined, TeamID: team, PlayerID: id, PlayerName: name, OccurredAt: time.Now()}
	subject, payload, err := events.Encode(e)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `WITH k AS (INSERT INTO uowkit_outbox_keys (key, seq) VALUES ($1, 1)
		ON CONFLICT (key) DO UPDATE SET seq = uowkit_outbox_keys.seq + 1 RETURNING seq)
		INSERT INTO uowkit_outbox (message_id, subject, key, key_seq, payload, headers)
		SELECT $2, $3, $1, k.seq, $4, $5 FROM k`, "player-"+strconv.FormatInt(id, 10), e.ID, subject, payload, nil); err != nil {
		return 0, err
	}
	return id, tx.Commit()
}
