package uowecho_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/uowecho"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// A unit's log lines name the Echo route that served the request.
func TestSlogLinesCarryTheEchoRoute(t *testing.T) {
	db := pgtest.Open(t, "uowecho")
	var out bytes.Buffer // the hooks' goroutine does not log: no hook is registered
	m := uow.New(db, uow.WithObserver(uow.NewSlogObserver(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))))
	e := echo.New()
	e.Use(uowecho.Transaction(m))
	e.POST("/teams/:id", func(c echo.Context) error {
		_, err := repo.From(c.Request().Context(), db).ExecContext(c.Request().Context(), `SELECT 1`)
		require.NoError(t, err)
		return c.NoContent(http.StatusCreated)
	})
	req := httptest.NewRequest(http.MethodPost, "/teams/7", nil)
	req.Header.Set("X-Request-Id", "echo-1")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusCreated, rec.Code)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3, out.String())
	for _, line := range lines {
		assert.Contains(t, line, `request.method=POST request.route=/teams/:id request.id=echo-1`)
	}
}
