package faultproxy_test

import (
	"context"
	"database/sql"
	"io"
	"net"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/faultproxy"
	"github.com/uowkit/uowkit/internal/pgtest"
)

// TestMain also checks, through pgtest.Main, that no goroutine outlives the
// tests: every proxy's pumps must end when it is closed.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// through returns a pool of driver on the test database, through a new proxy.
func through(t *testing.T, driver string) (*faultproxy.Proxy, *sql.DB) {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t, "faultproxy"))
	require.NoError(t, err)
	p := faultproxy.Start(t, u.Host)
	u.Host = p.Addr()
	db, err := sql.Open(driver, u.String())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return p, db
}

func TestForwardsBothWays(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"postgres", "pgx"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			p, db := through(t, driver)
			host, _, err := net.SplitHostPort(p.Addr())
			require.NoError(t, err)
			assert.Equal(t, "127.0.0.1", host)

			var s string
			require.NoError(t, db.QueryRow(`SELECT $1::text || 'b'`, "a").Scan(&s), "extended protocol")
			assert.Equal(t, "ab", s)
			tx, err := db.Begin()
			require.NoError(t, err)
			_, err = tx.Exec(`SELECT 1`)
			require.NoError(t, err)
			require.NoError(t, tx.Commit(), "COMMIT answers pass while no fault is set")
			assert.Zero(t, p.DroppedCommits())
		})
	}
}

func TestDropCommitReply(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"postgres", "pgx"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			p, db := through(t, driver)
			direct := pgtest.Open(t, "faultproxy")
			tbl := pgtest.Table(t, direct, "drop", `v int`)

			tx, err := db.Begin()
			require.NoError(t, err)
			_, err = tx.Exec(`INSERT INTO ` + tbl + ` VALUES (1)`)
			require.NoError(t, err)
			p.DropCommitReply(true)
			require.Error(t, tx.Commit())
			<-p.Applied()
			assert.Equal(t, int64(1), p.DroppedCommits())
			var n int
			require.NoError(t, direct.Get(&n, `SELECT count(*) FROM `+tbl))
			assert.Equal(t, 1, n, "applied by the server")

			p.DropCommitReply(false)
			tx, err = db.Begin()
			require.NoError(t, err)
			require.NoError(t, tx.Commit(), "a new connection, answers forwarded again")
		})
	}
}

func TestStallCommitReplyUntilCloseAll(t *testing.T) {
	t.Parallel()
	// lib/pq's Commit takes no context: only a broken connection ends it.
	p, db := through(t, "postgres")
	direct := pgtest.Open(t, "faultproxy")
	tbl := pgtest.Table(t, direct, "stall", `v int`)

	tx, err := db.Begin()
	require.NoError(t, err)
	_, err = tx.Exec(`INSERT INTO ` + tbl + ` VALUES (1)`)
	require.NoError(t, err)
	p.StallCommitReply(true)
	done := make(chan error, 1)
	go func() { done <- tx.Commit() }()
	<-p.Applied()
	var n int
	require.NoError(t, direct.Get(&n, `SELECT count(*) FROM `+tbl))
	assert.Equal(t, 1, n, "committed while the client still waits")
	p.CloseAll()
	require.Error(t, <-done)
}

func TestCloseAllBreaksCurrentConnections(t *testing.T) {
	t.Parallel()
	p, db := through(t, "postgres")
	ctx := context.Background()
	c, err := db.Conn(ctx)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.PingContext(ctx))
	p.CloseAll()
	_, err = c.ExecContext(ctx, `SELECT 1`)
	require.Error(t, err, "the held connection is gone")
	require.NoError(t, db.PingContext(ctx), "new connections still work")
}

func TestRejectNext(t *testing.T) {
	t.Parallel()
	p, db := through(t, "postgres")
	p.RejectNext(1)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "closed before the server sees it")
	require.NoError(t, db.Ping(), "only the next connection is refused")
}

func TestCloseEndsEverything(t *testing.T) {
	t.Parallel()
	p, db := through(t, "postgres")
	ctx := context.Background()
	c, err := db.Conn(ctx)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.PingContext(ctx))
	p.Close() // returns only when its goroutines have ended
	_, err = c.ExecContext(ctx, `SELECT 1`)
	require.Error(t, err, "the proxied connection was closed")
	p.Close() // the cleanup closes it again: harmless
}
