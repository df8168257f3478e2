package nethttp_test

import (
	"context"
	"database/sql"
	"net/http"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/uow"
)

type txKey struct{}

// eager is the baseline: a hand-written middleware that begins a transaction
// for every request and commits it when the handler returns.
func eager(db *sqlx.DB, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := db.BeginTxx(r.Context(), &sql.TxOptions{})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer tx.Rollback()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), txKey{}, tx)))
		_ = tx.Commit()
	})
}

// BenchmarkNoDBRequest measures what a request that never touches the
// database pays: bare handler, this middleware, and an eager
// BEGIN/COMMIT-per-request middleware.
func BenchmarkNoDBRequest(b *testing.B) {
	db := pgtest.Open(b, "nethttp")
	db.SetMaxIdleConns(4)
	healthz := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok"))
	})
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", healthz},
		{"uowkit", nethttp.Transaction(uow.New(db))(healthz)},
		{"uowkit-buffered", nethttp.TransactionWithOptions(uow.New(db), nethttp.Options{Buffer: 1 << 16})(healthz)},
		{"eager-begin-commit", eager(db, healthz)},
	} {
		webtest.BenchmarkHealthz(b, c.name, c.h)
	}
}
