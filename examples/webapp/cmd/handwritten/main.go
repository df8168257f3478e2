package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log"
	"os"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	_ "github.com/lib/pq"

	"github.com/uowkit/uowkit/examples/webapp/store"
)

var errFull = errors.New("team is full")

func main() {
	db, err := sqlx.Open("postgres", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(context.Background(), db); err != nil {
		log.Fatal(err)
	}
	e := echo.New()
	e.HideBanner = true
	e.POST("/teams/:id/players", func(c echo.Context) error {
		team, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil || team <= 0 {
			return c.JSON(400, map[string]string{"error": "invalid id"})
		}
		var req struct {
			Name string `json:"name"`
		}
		if err := json.NewDecoder(c.Request().Body).Decode(&req); err != nil || strings.TrimSpace(req.Name) == "" {
			return c.JSON(400, map[string]string{"error": "invalid JSON body"})
		}
		id, err := addPlayer(c.Request().Context(), db, team, strings.TrimSpace(req.Name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return c.JSON(404, map[string]string{"error": "team not found"})
		case errors.Is(err, errFull):
			return c.JSON(409, map[string]string{"error": "team is full"})
		case err != nil:
			c.Logger().Error(err)
			return c.JSON(500, map[string]string{"error": "internal error"})
		}
		return c.JSON(201, map[string]any{"id": id, "name": req.Name, "team_id": team})
	})
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8081"
	}
	log.Fatal(e.Start(addr))
}

func addPlayer(ctx context.Context, db *sqlx.DB, team int64, name string) (int64, error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var capacity, taken int
	if err := tx.GetContext(ctx, &capacity, `SELECT capacity FROM teams WHERE id = $1 FOR UPDATE`, team); err != nil {
		return 0, err
	}
	if err := tx.GetContext(ctx, &taken, `SELECT player_count FROM team_rosters WHERE team_id = $1`, team); err != nil {
		return 0, err
	}
	if taken >= capacity {
		return 0, errFull
	}
	var id int64
	if err := tx.GetContext(ctx, &id, `INSERT INTO players (name, team_id) VALUES ($1, $2) RETURNING id`, name, team); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE team_rosters SET player_count = player_count + 1 WHERE team_id = $1`, team); err != nil {
		return 0, err
	}
	payload, _ := json.Marshal(map[string]any{"id": id, "name": name, "team_id": team})
	if _, err := tx.ExecContext(ctx, `INSERT INTO events (type, payload) VALUES ('player-joined', $1)`, string(payload)); err != nil {
		return 0, err
	}
	return id, tx.Commit()
}
