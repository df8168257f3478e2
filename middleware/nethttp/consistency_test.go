package nethttp_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// With Options.Consistency, a write's response carries X-Consistency-LSN,
// and a read-only request that sends it back sees the write even while the
// replica's replay is paused (it reads the primary); without it, the read
// is the replica's, stale. A malformed header is answered 400 and the
// handler does not run. Streaming and buffered modes alike.
func TestConsistencyHeader(t *testing.T) {
	for _, buffer := range []int{0, 1 << 16} {
		t.Run(fmt.Sprint("buffer=", buffer), func(t *testing.T) {
			primary := pgtest.Open(t, "nethttp_replica")
			replica := sqlx.MustOpen("postgres", pgtest.ReplicaURL(t, "nethttp_replica"))
			defer replica.Close()
			tbl := pgtest.Table(t, primary, "items", `v text`)
			var lsn string
			require.NoError(t, primary.Get(&lsn, `SELECT pg_current_wal_lsn()::text`))
			require.Eventually(t, func() bool {
				var ok bool
				return replica.Get(&ok, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, lsn) == nil && ok
			}, 30*time.Second, 10*time.Millisecond, "the replica has the table")

			m := uow.New(primary, uow.WithReplicas(primary, uow.Replicas{DBs: []*sqlx.DB{replica}}))
			ran := 0
			h := nethttp.TransactionWithOptions(m, nethttp.Options{
				Consistency: true, Buffer: buffer, UnitOptions: nethttp.ReadOnlySafeMethods,
			})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ran++
				q := repo.From(r.Context(), primary)
				if r.Method == http.MethodPost {
					if _, err := q.ExecContext(r.Context(), `INSERT INTO `+tbl+` VALUES ('x')`); err != nil {
						http.Error(w, err.Error(), 500)
						return
					}
					w.WriteHeader(http.StatusCreated)
					return
				}
				var n int
				var standby bool
				if err := q.GetContext(r.Context(), &n, `SELECT count(*) FROM `+tbl); err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				_ = q.GetContext(r.Context(), &standby, `SELECT pg_is_in_recovery()`)
				fmt.Fprintf(w, "%d %v", n, standby)
			}))
			do := func(method, token string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, "/", nil)
				if token != "" {
					req.Header.Set(nethttp.ConsistencyHeader, token)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}

			pgtest.PauseReplay(t)

			w := do(http.MethodPost, "")
			require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
			token := w.Header().Get(nethttp.ConsistencyHeader)
			require.Regexp(t, `^default=[0-9A-F]+/[0-9A-F]+$`, token)

			w = do(http.MethodGet, "")
			assert.Equal(t, "0 true", w.Body.String(), "no token: the replica, stale")
			w = do(http.MethodGet, token)
			assert.Equal(t, "1 false", w.Body.String(), "the token: the primary, fresh")
			assert.Equal(t, token, w.Header().Get(nethttp.ConsistencyHeader), "and passed on")

			before := ran
			w = do(http.MethodGet, "default=nonsense")
			assert.Equal(t, http.StatusBadRequest, w.Code)
			assert.Contains(t, w.Body.String(), nethttp.ConsistencyHeader)
			assert.Equal(t, before, ran, "the handler did not run")
		})
	}
}
