package uowgin_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/uowgin"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// A unit's log lines name the Gin route that served the request.
func TestSlogLinesCarryTheGinRoute(t *testing.T) {
	db := pgtest.Open(t, "uowgin")
	var out lockedBuffer
	l := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := uow.New(db, uow.WithObserver(uow.NewSlogObserver(l)))
	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	g.Use(uowgin.Transaction(m))
	g.POST("/teams/:id", func(c *gin.Context) {
		_, err := repo.From(c.Request.Context(), db).ExecContext(c.Request.Context(), `SELECT 1`)
		require.NoError(t, err)
		c.Status(http.StatusCreated)
	})
	req := httptest.NewRequest(http.MethodPost, "/teams/7", nil)
	req.Header.Set("X-Request-Id", "gin-1")
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	require.Equal(t, http.StatusCreated, rec.Code)
	out.mu.Lock()
	lines := strings.Split(strings.TrimSpace(out.b.String()), "\n")
	out.mu.Unlock()
	require.NotEmpty(t, lines)
	for _, line := range lines {
		assert.Contains(t, line, `request.method=POST request.route=/teams/:id request.id=gin-1`)
	}
}
