package webtest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver, for deadConnection
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/faultproxy"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// holdTimeout is how long exhaustedPool lets the holder keep the pool's only
// connection before it gives up on the request and releases it: a request
// that returns only then has waited for the holder, which is the failure.
const holdTimeout = 3 * time.Second

// exhaustedPool runs requests, in every mode, against a pool of one
// connection that another unit holds for the whole test. A request under a
// Timeout of 200 ms must give up waiting for a connection and answer 504,
// and a request whose client hangs up while it waits must give up too; both
// before the holder lets go (holdTimeout). The handler leaves the answer to
// the middleware when its statement fails with the context's error, as
// handlers that do not catch the deadline do.
func exhaustedPool(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		for _, tc := range []struct {
			name    string
			timeout time.Duration
			hangUp  bool
			want    error // the statement's error
			status  int   // 0: the client hung up
		}{
			{"Timeout passes while waiting for a connection: 504", 200 * time.Millisecond, false, context.DeadlineExceeded, 504},
			{"the client hangs up while waiting for a connection", 0, true, context.Canceled, 0},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := NewEnv(t, tag)
				db := pgtest.Open(t, tag)
				db.SetMaxOpenConns(1)
				m := uow.New(db)
				release := holdOnlyConnection(t, m, db)

				finished := make(chan struct{})
				var stmtErr error
				s := mode.Options
				s.Timeout = tc.timeout
				s.ErrorHandler = func(*http.Request, error) {}
				h := stack(Setup{M: m, Options: s, Handler: func(w http.ResponseWriter, r *http.Request) error {
					defer close(finished)
					ctx := r.Context()
					_, stmtErr = repo.From(ctx, db).ExecContext(ctx, `INSERT INTO `+e.Table+` (v) VALUES ('x')`)
					switch {
					case errors.Is(stmtErr, context.DeadlineExceeded), errors.Is(stmtErr, context.Canceled):
						return nil // the middleware answers
					case stmtErr != nil:
						return stmtErr
					}
					w.WriteHeader(http.StatusCreated)
					return nil
				}})
				srv := httptest.NewServer(h)
				defer srv.Close()

				ctx, hangUp := context.WithCancel(context.Background())
				defer hangUp()
				sent := Go(ctx, srv.URL, "POST", "/", "")
				if tc.hangUp {
					waitForPool(t, db)
					hangUp()
				}
				select {
				case <-finished:
				case <-time.After(holdTimeout):
					release()
					<-finished
					t.Fatal("the request waited for the connection until its holder let go")
				}
				res := <-sent
				assert.ErrorIs(t, stmtErr, tc.want, "the statement's error")
				if tc.hangUp {
					assert.ErrorIs(t, res.Err, context.Canceled)
				} else {
					require.NoError(t, res.Err)
					assert.Equal(t, tc.status, res.Status)
				}
				release()
				assert.Zero(t, e.Rows(t))
			})
		}
	}
}

// holdOnlyConnection begins a unit of m that takes one of db's connections
// (the only one, for a pool of one) until the returned function or the
// test's end releases it.
func holdOnlyConnection(t *testing.T, m *uow.Manager, db *sqlx.DB) (release func()) {
	t.Helper()
	ctx, holder := m.Begin(context.Background())
	_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
	require.NoError(t, err)
	released := false
	release = func() {
		if !released {
			released = true
			_ = holder.Rollback()
		}
	}
	t.Cleanup(release)
	return release
}

// waitForPool waits until a caller is queued for one of db's connections,
// and fails the test after 30 s.
func waitForPool(t *testing.T, db *sqlx.DB) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); db.Stats().WaitCount == 0; {
		if time.Now().After(deadline) {
			t.Fatal("webtest: nobody waited for a connection after 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deadConnection checks, in every mode and with both drivers, that a pooled
// connection that broke while idle never fails a request. The middleware's
// pool, behind a fault proxy, holds one idle connection after a first
// request; then its backend is terminated (pg_terminate_backend: the drivers
// read the server's FATAL and report driver.ErrBadConn, which database/sql
// retries by itself), or the connection is reset (TCP RST, while idle or as
// the BEGIN is sent: the drivers pass "connection reset by peer" through,
// which only the unit retries). The next request, whose unit has no retry
// policy, must still commit and answer 201: uow begins it on another
// connection.
func deadConnection(t *testing.T, tag string, stack Stack) {
	t.Helper()
	for _, mode := range Modes() {
		for _, drv := range []string{"postgres", "pgx"} {
			for _, how := range []string{"terminated", "reset", "reset during BEGIN"} {
				t.Run(mode.Name+"/"+drv+"/"+how, func(t *testing.T) {
					t.Parallel()
					e := NewEnv(t, tag)
					db, proxy := proxied(t, drv, tag) // the middleware's pool, nobody else's
					m := uow.New(db)
					h := stack(Setup{M: m, Options: mode.Options, Handler: func(w http.ResponseWriter, r *http.Request) error {
						ctx := r.Context()
						if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO `+e.Table+` (v) VALUES ('x')`); err != nil {
							return err
						}
						w.WriteHeader(http.StatusCreated)
						return nil
					}})
					srv := httptest.NewServer(h)
					defer srv.Close()

					require.Equal(t, 201, Send(t, srv.URL, "POST", "/", "").Status)
					require.Equal(t, 1, db.Stats().Idle, "one idle connection in the pool")
					switch how {
					case "terminated":
						var pid int
						require.NoError(t, db.Get(&pid, `SELECT pg_backend_pid()`)) // on that connection
						Terminate(t, e.DB, pid)
					case "reset":
						proxy.ResetAll()
					default:
						proxy.ResetNextBegins(1)
					}

					res := Send(t, srv.URL, "POST", "/", "")
					assert.Equal(t, 201, res.Status, res.Body)
					assert.Equal(t, 2, e.Rows(t))
					assert.Zero(t, db.Stats().InUse, "connections in use")
				})
			}
		}
	}
}

// proxied opens a pool with driver drv on the database of tag, through a
// fault proxy of its own.
func proxied(t *testing.T, drv, tag string) (*sqlx.DB, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t, tag))
	require.NoError(t, err)
	proxy := faultproxy.Start(t, u.Host)
	u.Host = proxy.Addr()
	db, err := sqlx.Open(drv, u.String())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db, proxy
}

// Terminate ends the backend pid with pg_terminate_backend, through admin
// (a pool on the same server, not the backend's), and waits until the
// server no longer lists it.
func Terminate(t *testing.T, admin *sqlx.DB, pid int) {
	t.Helper()
	var ok bool
	require.NoError(t, admin.Get(&ok, `SELECT pg_terminate_backend($1, 5000)`, pid))
	require.True(t, ok, "pg_terminate_backend(%d)", pid)
	for deadline := time.Now().Add(30 * time.Second); ; {
		var n int
		require.NoError(t, admin.Get(&n, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid))
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webtest: backend %d survived pg_terminate_backend for 30 s", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
