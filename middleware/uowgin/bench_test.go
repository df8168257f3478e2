package uowgin_test

import (
	"database/sql"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowgin"
	"github.com/uowkit/uowkit/uow"
)

// BenchmarkNoDBRequest measures what a request that never touches the
// database pays: a bare Gin handler, through this middleware (streaming and
// buffered), and through an eager BEGIN/COMMIT-per-request middleware as
// the baseline, in one run.
func BenchmarkNoDBRequest(b *testing.B) {
	db := pgtest.Open(b, "gin")
	db.SetMaxIdleConns(4)
	eager := func(c *gin.Context) {
		tx, err := db.BeginTxx(c.Request.Context(), &sql.TxOptions{})
		if err != nil {
			c.AbortWithStatus(500)
			return
		}
		defer tx.Rollback()
		c.Next()
		_ = tx.Commit()
	}
	for _, c := range []struct {
		name string
		mw   []gin.HandlerFunc
	}{
		{"bare", nil},
		{"uowgin", []gin.HandlerFunc{uowgin.Transaction(uow.New(db))}},
		{"uowgin-buffered", []gin.HandlerFunc{uowgin.TransactionWithOptions(uow.New(db), nethttp.Options{Buffer: 1 << 10})}},
		{"eager-begin-commit", []gin.HandlerFunc{eager}},
	} {
		r := gin.New()
		r.Use(c.mw...)
		r.GET("/healthz", func(c *gin.Context) { c.String(200, "ok") })
		webtest.BenchmarkHealthz(b, c.name, r)
	}
}
