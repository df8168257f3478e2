package nethttp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// syncBuffer is a log sink safe for the middleware's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A unit's log lines say which request it served: method, route and
// request id, in both modes.
func TestSlogObserverLinesCarryTheRequest(t *testing.T) {
	db := pgtest.Open(t, "nethttp")
	for _, buffer := range []int{0, 1 << 16} {
		var out syncBuffer
		l := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		m := uow.New(db, uow.WithObserver(uow.NewSlogObserver(l)))
		mux := http.NewServeMux()
		mux.HandleFunc("POST /teams/{id}", func(w http.ResponseWriter, r *http.Request) {
			_, err := repo.From(r.Context(), db).ExecContext(r.Context(), `SELECT 1`)
			require.NoError(t, err)
			w.WriteHeader(http.StatusCreated)
		})
		h := nethttp.TransactionWithOptions(m, nethttp.Options{Buffer: buffer})(mux)
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/teams/7", nil)
		req.Header.Set("X-Request-Id", "req-42")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusCreated, rec.Code)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, lines, 3, "begin, commit, unit: %s", out.String())
		for _, line := range lines {
			assert.Contains(t, line, `request.method=POST request.route="POST /teams/{id}" request.id=req-42`, "buffer %d", buffer)
		}
	}
}
