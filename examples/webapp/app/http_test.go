package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/examples/webapp/httpapi"
	"github.com/uowkit/uowkit/internal/pgtest"
)

// A request body larger than httpapi.MaxBody is answered 413 in the API's
// error shape, whether its Content-Length says so or it is chunked and
// passes the limit while being read (in the middle of a valid document, or
// in white space after one); a body of exactly MaxBody bytes is read.
func TestOversizedBodyIs413(t *testing.T) {
	e := open(t, "", t.TempDir()+"/webapp.db", false)
	c, _ := start(t, e.db, quiet)
	fits := `{"name":"Fits","capacity":2}`
	fits += strings.Repeat(" ", httpapi.MaxBody-len(fits))
	name := `{"name":"` + strings.Repeat("x", httpapi.MaxBody) + `","capacity":2}`
	trailing := `{"name":"Trailing","capacity":2}` + strings.Repeat(" ", httpapi.MaxBody)
	for _, tc := range []struct {
		name    string
		body    string
		chunked bool
		status  int
	}{
		{"exactly MaxBody", fits, false, http.StatusCreated},
		{"exactly MaxBody, chunked", fits, true, http.StatusCreated},
		{"Content-Length", name, false, http.StatusRequestEntityTooLarge},
		{"chunked, in a string", name, true, http.StatusRequestEntityTooLarge},
		{"chunked, after the object", trailing, true, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", c.url+"/teams", strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.chunked {
				req.ContentLength = -1 // unknown: sent chunked
			}
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, res.StatusCode, string(b))
			if tc.status == http.StatusRequestEntityTooLarge {
				assert.JSONEq(t, fmt.Sprintf(`{"error":"request body larger than %d bytes"}`, httpapi.MaxBody), string(b))
			}
		})
	}
	assert.Equal(t, 2, count(t, e.db, `SELECT count(*) FROM teams`), "only the bodies that fit were stored")
	assert.Zero(t, count(t, e.db, `SELECT count(*) FROM teams WHERE name = 'Trailing'`))
}

// HEAD is answered wherever GET is, with the GET's status and headers
// (Content-Length included) and no body, in a read-only unit like GET's;
// every GET route the API registers has its HEAD.
func TestHeadAnswersAsGet(t *testing.T) {
	backends(t, func(t *testing.T, e env) {
		c, a := start(t, e.db, quiet)
		team := c.team("Reds", 2)
		c.player(team, "Ann")
		// With the join's token both see the projection with Ann, lag 0.
		fresh := http.Header{"X-Consistency-Token": {c.token()}}
		for _, path := range []string{"/healthz", fmt.Sprintf("/teams/%d", team), fmt.Sprintf("/teams/%d/history", team), "/teams/999", "/teams/abc"} {
			get := c.sendWith(context.Background(), "GET", path, "", fresh)
			head := c.sendWith(context.Background(), "HEAD", path, "", fresh)
			assert.Equal(t, get.status, head.status, path)
			assert.NotEqual(t, http.StatusMethodNotAllowed, head.status, path)
			require.NotEmpty(t, get.body, path)
			assert.Empty(t, head.body, path)
			for _, h := range []http.Header{get.header, head.header} {
				h.Del("Date")
				h.Del("X-Request-Id") // one per request
			}
			assert.Equal(t, get.header, head.header, path)
			assert.Equal(t, fmt.Sprint(len(get.body)), head.header.Get("Content-Length"), path)
		}

		gets, heads := map[string]bool{}, map[string]bool{}
		for _, r := range a.Echo.Routes() {
			switch r.Method {
			case http.MethodGet:
				gets[r.Path] = true
			case http.MethodHead:
				heads[r.Path] = true
			}
		}
		require.NotEmpty(t, gets)
		assert.Equal(t, gets, heads, "every GET route has a HEAD route")
	})
}

// A request stuck past REQUEST_TIMEOUT (app.Options.RequestTimeout) gets
// 504 in the API's shape instead of holding its connection: its statement,
// waiting for a row lock held elsewhere, is cancelled, the connection goes
// back to the pool while the lock is still held, and nothing the request
// did is committed.
func TestStuckRequestTimesOut(t *testing.T) {
	e := postgres(t)
	logs, log := newLogs()
	// Long enough for the join to reach the lock, which the test waits to
	// see; the answer cannot come before the deadline whatever the machine.
	c, _ := startWith(t, e.db, log, app.Options{RequestTimeout: time.Second})
	team := c.team("Reds", 5)
	other := e.other()
	v, err := other.Beginx()
	require.NoError(t, err)
	defer v.Rollback()
	v.MustExec(`SELECT 1 FROM teams WHERE id = $1 FOR UPDATE`, team)

	done := make(chan response, 1)
	go func() {
		done <- c.send(context.Background(), "POST", fmt.Sprintf("/teams/%d/players", team), `{"name":"Ann"}`)
	}()
	pgtest.WaitBlocked(t, other, "FROM teams WHERE id", 1)
	var r response
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer 30 s after the request, with the lock still held")
	}
	assertInternal(t, r, http.StatusGatewayTimeout)
	assert.JSONEq(t, `{"error":"timeout"}`, string(r.body))

	require.Eventually(t, func() bool { return e.db.Stats().InUse == 0 }, 10*time.Second, 5*time.Millisecond,
		"the request's connection goes back to the pool")
	var waiting int
	require.NoError(t, other.Get(&waiting, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`))
	assert.Zero(t, waiting, "no statement of the service still waits for the lock")
	require.NoError(t, v.Rollback())
	players, roster := rows(t, e.db, team)
	assert.Equal(t, [2]int{0, 0}, [2]int{players, roster}, "nothing committed")
	assert.Zero(t, eventCount(t, e.db, domain.PlayerJoined))
	assert.NotEmpty(t, logs.find("request failed"), "the timeout is logged")
}
