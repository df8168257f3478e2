package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/retry"
)

// Service is what the handlers need from the application.
// Commands return the consistency token of the event they recorded ("" for
// none); queries take one ("" for none) and return the projection's lag.
type Service interface {
	CreateTeam(ctx context.Context, name string, capacity int) (domain.Team, string, error)
	AddPlayer(ctx context.Context, team int64, name string) (domain.Player, string, error)
	MovePlayer(ctx context.Context, player, team int64) (domain.Player, string, error)
	Team(ctx context.Context, id int64, token string) (domain.Roster, time.Duration, error)
	History(ctx context.Context, id int64, token string) ([]domain.HistoryEntry, time.Duration, error)
}

// Headers of the read-your-writes contract.
const (
	// HeaderToken carries a command's consistency token in its response;
	// a query that sends it back answers only once the projection shows
	// the command (or 503 {"error":"projection behind"}).
	HeaderToken = "X-Consistency-Token"
	// HeaderLag is set on every query's response: how far the projection
	// is behind the events recorded, in milliseconds (three decimals).
	HeaderLag = "X-Projection-Lag"
)

// maxToken bounds the length of a consistency token a client sends.
const maxToken = 255

// The API's JSON shapes. The domain's types carry no wire names: these do.
type (
	teamJSON struct {
		ID       int64  `json:"id"`
		Name     string `json:"name"`
		Capacity int    `json:"capacity"`
	}
	playerJSON struct {
		ID     int64  `json:"id"`
		Name   string `json:"name"`
		TeamID int64  `json:"team_id"`
	}
	memberJSON struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	rosterJSON struct {
		teamJSON
		Players []memberJSON `json:"players"`
	}
	entryJSON struct {
		EventID    string    `json:"event_id"`
		Type       string    `json:"type"`
		PlayerID   int64     `json:"player_id"`
		PlayerName string    `json:"player_name"`
		FromTeamID *int64    `json:"from_team_id"`
		ToTeamID   int64     `json:"to_team_id"`
		OccurredAt time.Time `json:"occurred_at"`
	}
	historyJSON struct {
		TeamID  int64       `json:"team_id"`
		History []entryJSON `json:"history"`
	}
	errorJSON struct {
		Error string `json:"error"`
	}
)

type handlers struct {
	svc Service
	log *slog.Logger
}

// Register adds the API's routes and error handler to e. Every GET route
// answers HEAD too (see get).
func Register(e *echo.Echo, svc Service, log *slog.Logger) {
	h := &handlers{svc: svc, log: log}
	e.HTTPErrorHandler = h.error
	get(e, "/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.POST("/teams", h.createTeam)
	get(e, "/teams/:id", h.team)
	get(e, "/teams/:id/history", h.history)
	e.POST("/teams/:id/players", h.addPlayer)
	e.POST("/players/:id/move", h.movePlayer)
}

// get routes GET and HEAD requests for path to h. Echo routes HEAD only
// where it is registered (elsewhere it answers 405); with the same handler,
// a HEAD request gets the status and headers (Content-Length included) of
// the GET, and net/http drops the body it writes. HEAD is a safe method: it
// runs read-only, as GET does (nethttp.ReadOnlySafeMethods).
func get(e *echo.Echo, path string, h echo.HandlerFunc) {
	e.GET(path, h)
	e.HEAD(path, h)
}

func (h *handlers) createTeam(c echo.Context) error {
	var req struct {
		Name     string `json:"name"`
		Capacity int    `json:"capacity"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	t, token, err := h.svc.CreateTeam(c.Request().Context(), req.Name, req.Capacity)
	if err != nil {
		return err
	}
	setToken(c, token)
	return c.JSON(http.StatusCreated, teamJSON(t))
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
	p, token, err := h.svc.AddPlayer(c.Request().Context(), team, req.Name)
	if err != nil {
		return err
	}
	setToken(c, token)
	return c.JSON(http.StatusCreated, playerJSON(p))
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
	p, token, err := h.svc.MovePlayer(c.Request().Context(), player, req.TeamID)
	if err != nil {
		return err
	}
	setToken(c, token)
	return c.JSON(http.StatusOK, playerJSON(p))
}

func (h *handlers) team(c echo.Context) error {
	id, err := id(c)
	if err != nil {
		return err
	}
	token, err := tokenOf(c)
	if err != nil {
		return err
	}
	r, lag, err := h.svc.Team(c.Request().Context(), id, token)
	if err != nil {
		return err
	}
	setLag(c, lag)
	out := rosterJSON{teamJSON: teamJSON(r.Team), Players: make([]memberJSON, len(r.Players))}
	for i, p := range r.Players {
		out.Players[i] = memberJSON{p.ID, p.Name}
	}
	return c.JSON(http.StatusOK, out)
}

func (h *handlers) history(c echo.Context) error {
	id, err := id(c)
	if err != nil {
		return err
	}
	token, err := tokenOf(c)
	if err != nil {
		return err
	}
	entries, lag, err := h.svc.History(c.Request().Context(), id, token)
	if err != nil {
		return err
	}
	setLag(c, lag)
	out := historyJSON{TeamID: id, History: make([]entryJSON, len(entries))}
	for i, e := range entries {
		out.History[i] = entryJSON{EventID: e.EventID, Type: e.Type, PlayerID: e.PlayerID, PlayerName: e.PlayerName,
			ToTeamID: e.ToTeamID, OccurredAt: e.OccurredAt}
		if e.FromTeamID != 0 {
			out.History[i].FromTeamID = &e.FromTeamID
		}
	}
	return c.JSON(http.StatusOK, out)
}

// setToken sends a command's consistency token, if it has one.
func setToken(c echo.Context, token string) {
	if token != "" {
		c.Response().Header().Set(HeaderToken, token)
	}
}

// setLag sends the projection's lag, in milliseconds with three decimals.
func setLag(c echo.Context, lag time.Duration) {
	c.Response().Header().Set(HeaderLag, strconv.FormatFloat(float64(lag.Microseconds())/1000, 'f', 3, 64))
}

// tokenOf returns the request's consistency token: "" when it sends none;
// 400 when it is not 1 to 255 printable ASCII characters.
func tokenOf(c echo.Context) (string, error) {
	t := c.Request().Header.Get(HeaderToken)
	if t == "" {
		return "", nil
	}
	if len(t) > maxToken {
		return "", domain.Errorf(domain.Invalid, "invalid %s", HeaderToken)
	}
	for i := range len(t) {
		if t[i] <= ' ' || t[i] > '~' {
			return "", domain.Errorf(domain.Invalid, "invalid %s", HeaderToken)
		}
	}
	return t, nil
}

func id(c echo.Context) (int64, error) {
	n, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || n <= 0 {
		return 0, domain.Errorf(domain.Invalid, "invalid id %q", c.Param("id"))
	}
	return n, nil
}

// MaxBody bounds a request body, in bytes. A larger one is answered 413.
const MaxBody = 1 << 16

// errTooLarge answers a request body larger than MaxBody.
var errTooLarge = echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBody))

// decode reads a JSON body strictly: one object, known fields only, nothing
// after it but white space. A body larger than MaxBody is refused with 413:
// at once when its Content-Length says so, else when reading it passes the
// limit (a chunked body), even in the middle of a valid document.
func decode(c echo.Context, v any) error {
	r := c.Request()
	if r.ContentLength > MaxBody {
		return errTooLarge
	}
	d := json.NewDecoder(http.MaxBytesReader(c.Response(), r.Body, MaxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		if tooLarge(err) {
			return errTooLarge
		}
		return domain.Errorf(domain.Invalid, "invalid JSON body")
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			return errTooLarge
		}
		return domain.Errorf(domain.Invalid, "invalid JSON body: trailing data")
	}
	return nil
}

// tooLarge reports whether err is http.MaxBytesReader's: the body passed
// MaxBody.
func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

var statuses = map[domain.Code]int{
	domain.Invalid:     http.StatusBadRequest,
	domain.NotFound:    http.StatusNotFound,
	domain.Conflict:    http.StatusConflict,
	domain.Unavailable: http.StatusServiceUnavailable,
}

// Messages of the errors that are not the client's: nothing more is said.
const (
	msgInternal  = "internal error"
	msgConflict  = "conflict with a concurrent request; try again"
	msgCancelled = "request cancelled"
	msgTimeout   = "timeout"
)

// retryAfter is the Retry-After of 503 answers, in seconds.
const retryAfter = "1"

// error is the one place errors become responses: application errors by
// code, Echo's own (unknown route, method) by status, and the rest by what
// went wrong, logged, with a fixed message that tells the client nothing
// internal.
func (h *handlers) error(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	r := c.Request()
	status, msg, level := classify(r.Context(), err)
	if status >= 500 {
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Any("error", err), slog.String("id", r.Header.Get(echo.HeaderXRequestID))}
		var pe *panicError
		if errors.As(err, &pe) {
			attrs = append(attrs, slog.String("stack", string(pe.stack)))
		}
		h.log.LogAttrs(r.Context(), level, "request failed", attrs...)
	}
	if status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", retryAfter)
	}
	if err := c.JSON(status, errorJSON{msg}); err != nil {
		h.log.ErrorContext(r.Context(), "writing error response", slog.Any("error", err))
	}
}

// classify returns the status and message for err, and the level at which
// a server-side failure is logged.
func classify(ctx context.Context, err error) (int, string, slog.Level) {
	var he *echo.HTTPError
	var pe *panicError
	switch {
	case errors.As(err, &pe):
		return http.StatusInternalServerError, msgInternal, slog.LevelError
	case errors.As(err, &he):
		if he.Code >= 500 {
			return he.Code, http.StatusText(he.Code), slog.LevelError
		}
		return he.Code, fmt.Sprint(he.Message), slog.LevelInfo
	case domain.ErrorCode(err) != domain.Internal:
		return statuses[domain.ErrorCode(err)], err.Error(), slog.LevelInfo
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		// The client left, or the server is shutting down and cancelled
		// the request: the unit rolled back, and there is nothing to fix.
		// (lib/pq reports a cancelled statement as 57014, not as
		// context.Canceled: the request's context says why.)
		return http.StatusServiceUnavailable, msgCancelled, slog.LevelInfo
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return http.StatusGatewayTimeout, msgTimeout, slog.LevelWarn
	case retry.Retryable(err):
		// A deadlock or serialization failure: the middleware re-runs the
		// request while its policy allows, and this answer only reaches
		// the client when it gives up.
		return http.StatusServiceUnavailable, msgConflict, slog.LevelWarn
	}
	return http.StatusInternalServerError, msgInternal, slog.LevelError
}

// UnitFailure answers, in the API's error shape, a request whose unit of
// work could not be committed (500), could not be committed for a reason
// worth retrying or was cancelled while waiting to be re-run (503, its
// Retry-After already set), or ran out of time (504). It is the unit
// middleware's FailureResponse (nethttp.Options), which writes to w, not
// through Echo: the handler's response is being replaced. err only chooses
// the message, and is logged by the middleware's ErrorHandler, never shown.
//
// The middleware drops every header of the replaced response, the request
// id's too: UnitFailure sets it again (see RequestID).
func UnitFailure(w http.ResponseWriter, r *http.Request, status int, err error) {
	msg := msgInternal
	switch {
	case status == http.StatusGatewayTimeout:
		msg = msgTimeout
	case status == http.StatusServiceUnavailable && errors.Is(err, context.Canceled):
		msg = msgCancelled
	case status == http.StatusServiceUnavailable:
		msg = msgConflict
	}
	if id := r.Header.Get(echo.HeaderXRequestID); id != "" {
		w.Header().Set(echo.HeaderXRequestID, id)
	}
	w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	_ = json.NewEncoder(w).Encode(errorJSON{msg})
}

// Recover is Echo's Recover middleware with panics handed to the API's error
// handler, which logs them with their stack through slog and answers 500.
func Recover() echo.MiddlewareFunc {
	return middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(_ echo.Context, err error, stack []byte) error {
			return &panicError{err: err, stack: stack}
		},
	})
}

// panicError is a recovered panic on its way to the error handler.
type panicError struct {
	err   error
	stack []byte
}

func (e *panicError) Error() string { return "panic: " + e.err.Error() }
func (e *panicError) Unwrap() error { return e.err }
