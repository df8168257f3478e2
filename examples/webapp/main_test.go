package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A request in flight when the signal comes finishes, and its unit commits;
// new connections are refused; serve returns.
func TestGracefulShutdownLetsInFlightUnitsFinish(t *testing.T) {
	db := pgtest.Open(t, "webapp_main")
	require.NoError(t, store.Migrate(context.Background(), db))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(db, log)
	require.NoError(t, err)
	inside, release := make(chan struct{}), make(chan struct{})
	// A slow route for the test: it writes through the request's unit, then
	// waits to be released.
	a.Echo.POST("/slow", func(c echo.Context) error {
		ctx := c.Request().Context()
		if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO teams (name, capacity) VALUES ('slow', 1)`); err != nil {
			return err
		}
		close(inside)
		<-release
		return c.NoContent(http.StatusCreated)
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, signal := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, &http.Server{Handler: a.Echo}, ln, log, 10*time.Second) }()

	status := make(chan int, 1)
	go func() {
		res, err := http.Post("http://"+ln.Addr().String()+"/slow", "", strings.NewReader(""))
		if err != nil {
			status <- 0
			return
		}
		res.Body.Close()
		status <- res.StatusCode
	}()
	<-inside
	signal() // SIGTERM
	// The listener closes before in-flight requests are waited for.
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond, "new connections are refused during shutdown")
	close(release)
	assert.Equal(t, http.StatusCreated, <-status)
	require.NoError(t, <-done)
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM teams WHERE name = 'slow'`))
	assert.Equal(t, 1, n, "the in-flight request's unit committed")
}
