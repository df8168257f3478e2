package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/uowkit/uowkit/examples/webapp/domain"
)

// Service is what the handlers need from the application.
type Service interface {
	CreateTeam(ctx context.Context, name string, capacity int) (domain.Team, error)
	AddPlayer(ctx context.Context, team int64, name string) (domain.Player, error)
	MovePlayer(ctx context.Context, player, team int64) (domain.Player, error)
	Team(ctx context.Context, id int64) (domain.Roster, error)
}

type handlers struct {
	svc Service
	log *slog.Logger
}

// Register adds the API's routes and error handler to e.
func Register(e *echo.Echo, svc Service, log *slog.Logger) {
	h := &handlers{svc: svc, log: log}
	e.HTTPErrorHandler = h.error
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.POST("/teams", h.createTeam)
	e.GET("/teams/:id", h.team)
	e.POST("/teams/:id/players", h.addPlayer)
	e.POST("/players/:id/move", h.movePlayer)
}

func (h *handlers) createTeam(c echo.Context) error {
	var req struct {
		Name     string `json:"name"`
		Capacity int    `json:"capacity"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	t, err := h.svc.CreateTeam(c.Request().Context(), req.Name, req.Capacity)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, t)
}

func (h *handlers) addPlayer(c echo.Context) error {
	team, err := id(c)
	if err != nil {
		return err
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	p, err := h.svc.AddPlayer(c.Request().Context(), team, req.Name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, p)
}

func (h *handlers) movePlayer(c echo.Context) error {
	player, err := id(c)
	if err != nil {
		return err
	}
	var req struct {
		TeamID int64 `json:"team_id"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.TeamID <= 0 {
		return domain.Errorf(domain.Invalid, "team_id must be a positive integer")
	}
	p, err := h.svc.MovePlayer(c.Request().Context(), player, req.TeamID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (h *handlers) team(c echo.Context) error {
	id, err := id(c)
	if err != nil {
		return err
	}
	r, err := h.svc.Team(c.Request().Context(), id)
	if err != nil {
		return err
	}
	type player struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	players := make([]player, len(r.Players))
	for i, p := range r.Players {
		players[i] = player{p.ID, p.Name}
	}
	return c.JSON(http.StatusOK, map[string]any{"id": r.ID, "name": r.Name, "capacity": r.Capacity, "players": players})
}

func id(c echo.Context) (int64, error) {
	n, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || n <= 0 {
		return 0, domain.Errorf(domain.Invalid, "invalid id %q", c.Param("id"))
	}
	return n, nil
}

// decode reads a JSON body strictly: one object, known fields only.
func decode(c echo.Context, v any) error {
	d := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<16))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return domain.Errorf(domain.Invalid, "invalid JSON body")
	}
	return nil
}

var statuses = map[domain.Code]int{
	domain.Invalid:  http.StatusBadRequest,
	domain.NotFound: http.StatusNotFound,
	domain.Conflict: http.StatusConflict,
}

// error is the one place errors become responses: application errors by
// code, Echo's own (unknown route, method) by status; anything else is
// logged and shown only as "internal error".
func (h *handlers) error(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		status, msg = he.Code, fmt.Sprint(he.Message)
		if status >= 500 {
			msg = http.StatusText(status)
		}
	case domain.ErrorCode(err) != domain.Internal:
		status, msg = statuses[domain.ErrorCode(err)], err.Error()
	}
	if status >= 500 {
		h.log.ErrorContext(c.Request().Context(), "request failed", slog.String("method", c.Request().Method),
			slog.String("path", c.Request().URL.Path), slog.Any("error", err))
	}
	if err := c.JSON(status, map[string]string{"error": msg}); err != nil {
		h.log.ErrorContext(c.Request().Context(), "writing error response", slog.Any("error", err))
	}
}
