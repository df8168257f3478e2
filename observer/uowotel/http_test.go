package uowotel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowecho"
	"github.com/uowkit/uowkit/middleware/uowgin"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// work is what a request handler does in its unit: it returns the status
// to answer with.
type work func(ctx context.Context) int

// adapter builds an HTTP handler serving POST /items with w under one of
// uowkit's middlewares.
type adapter func(m *uow.Manager, o nethttp.Options, w work) http.Handler

var adapters = map[string]adapter{
	"net/http": func(m *uow.Manager, o nethttp.Options, w work) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /items", func(rw http.ResponseWriter, r *http.Request) {
			rw.WriteHeader(w(r.Context()))
		})
		return nethttp.TransactionWithOptions(m, o)(mux)
	},
	"echo": func(m *uow.Manager, o nethttp.Options, w work) http.Handler {
		e := echo.New()
		e.Use(uowecho.TransactionWithOptions(m, o))
		e.POST("/items", func(c echo.Context) error { return c.NoContent(w(c.Request().Context())) })
		return e
	},
	"gin": func(m *uow.Manager, o nethttp.Options, w work) http.Handler {
		gin.SetMode(gin.ReleaseMode)
		g := gin.New()
		g.Use(uowgin.TransactionWithOptions(m, o))
		g.POST("/items", func(c *gin.Context) { c.Status(w(c.Request.Context())) })
		return g
	},
}

// A request's unit is a child of the HTTP server's span (otelhttp's here),
// under every adapter, committed, rolled back, and retried whole in
// buffered mode.
func TestHTTPRequests(t *testing.T) {
	t.Parallel()
	for name, build := range adapters {
		for _, tc := range []struct {
			name    string
			opts    nethttp.Options
			work    func(db *sqlx.DB, tbl string) work
			status  int
			outline string
			metrics map[string]int64
		}{
			{"201 commits", nethttp.Options{}, func(db *sqlx.DB, tbl string) work {
				return func(ctx context.Context) int {
					if err := insert(ctx, db, tbl, "x"); err != nil {
						return http.StatusInternalServerError
					}
					return http.StatusCreated
				}
			}, http.StatusCreated, `POST /items
  uow.unit
    uow.begin default
    uow.commit default
`, map[string]int64{
				"uow.unit.duration{uow.outcome=committed}": 1,
				"uow.commit.duration{uow.source=default}":  1,
			}},
			{"409 rolls back", nethttp.Options{}, func(db *sqlx.DB, tbl string) work {
				return func(ctx context.Context) int {
					if err := insert(ctx, db, tbl, "x"); err != nil {
						return http.StatusInternalServerError
					}
					return http.StatusConflict
				}
			}, http.StatusConflict, `POST /items
  uow.unit
    uow.begin default
    uow.rollback default
`, map[string]int64{
				"uow.unit.duration{uow.outcome=rolled back}": 1,
				"uow.rollbacks{uow.outcome=rolled back}":     1,
			}},
			{"buffered: a 40001 re-runs the request", nethttp.Options{
				Buffer:      1 << 16,
				UnitOptions: func(*http.Request) []uow.Option { return []uow.Option{uow.Retry(fast)} },
			}, func(db *sqlx.DB, tbl string) work {
				var attempts atomic.Int64
				return func(ctx context.Context) int {
					if err := insert(ctx, db, tbl, fmt.Sprint(attempts.Add(1))); err != nil {
						return http.StatusInternalServerError
					}
					if attempts.Load() == 1 {
						if _, err := repo.From(ctx, db).ExecContext(ctx, raise40001); err == nil {
							return http.StatusTeapot // the test fails: the server raised nothing
						}
						return http.StatusInternalServerError
					}
					return http.StatusCreated
				}
			}, http.StatusCreated, `POST /items
  uow.unit
    uow.begin default
    uow.rollback default
  uow.retry
  uow.unit
    uow.begin default
    uow.commit default
`, map[string]int64{
				"uow.unit.duration{uow.outcome=committed}":   1,
				"uow.unit.duration{uow.outcome=rolled back}": 1,
				"uow.rollbacks{uow.outcome=rolled back}":     1,
				"uow.commit.duration{uow.source=default}":    1,
				"uow.retries{uow.sqlstate=40001}":            1,
			}},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				o := newOtel(t)
				db := pgtest.Open(t, "uowotel")
				tbl := newTable(t, db)
				m := uow.New(db, uow.WithObserver(o.obs))
				h := otelhttp.NewHandler(build(m, tc.opts, tc.work(db, tbl)), "server",
					otelhttp.WithTracerProvider(o.tp),
					otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))

				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/items", nil))
				require.Equal(t, tc.status, rec.Code)

				assert.Equal(t, tc.outline, o.outline())
				server := o.one(t, "POST /items")
				for _, u := range o.named("uow.unit") {
					assert.Equal(t, server.SpanContext().SpanID(), u.Parent().SpanID())
					assert.Equal(t, server.SpanContext().TraceID(), u.SpanContext().TraceID())
				}
				assert.Equal(t, tc.metrics, o.points(t))
			})
		}
	}
}
