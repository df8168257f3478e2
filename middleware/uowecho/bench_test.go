package uowecho_test

import (
	"database/sql"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowecho"
	"github.com/uowkit/uowkit/uow"
)

// BenchmarkNoDBRequest measures what a request that never touches the
// database pays: bare Echo, this middleware (streaming and buffered), and an
// eager BEGIN/COMMIT-per-request middleware as the baseline, in one run.
func BenchmarkNoDBRequest(b *testing.B) {
	db := pgtest.Open(b, "echo")
	db.SetMaxIdleConns(4)
	eager := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tx, err := db.BeginTxx(c.Request().Context(), &sql.TxOptions{})
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if err := next(c); err != nil {
				return err
			}
			return tx.Commit()
		}
	}
	for _, c := range []struct {
		name string
		mw   []echo.MiddlewareFunc
	}{
		{"bare", nil},
		{"uowkit", []echo.MiddlewareFunc{uowecho.Transaction(uow.New(db))}},
		{"uowkit-buffered", []echo.MiddlewareFunc{uowecho.TransactionWithOptions(uow.New(db), nethttp.Options{Buffer: 1 << 10})}},
		{"eager-begin-commit", []echo.MiddlewareFunc{eager}},
	} {
		e := echo.New()
		e.Use(c.mw...)
		e.GET("/healthz", func(c echo.Context) error { return c.String(200, "ok") })
		webtest.BenchmarkHealthz(b, c.name, e)
	}
}
