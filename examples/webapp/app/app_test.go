package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// backends runs a test against PostgreSQL and against SQLite.
func backends(t *testing.T, test func(t *testing.T, db *sqlx.DB)) {
	t.Run("postgres", func(t *testing.T) {
		db := pgtest.Open(t, "webapp_"+t.Name())
		db.SetMaxOpenConns(20)
		require.NoError(t, store.Migrate(context.Background(), db))
		test(t, db)
	})
	t.Run("sqlite", func(t *testing.T) {
		db, err := app.Open("", filepath.Join(t.TempDir(), "webapp.db"))
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		require.NoError(t, store.Migrate(context.Background(), db))
		test(t, db)
	})
}

type client struct {
	t   *testing.T
	url string
}

func start(t *testing.T, db *sqlx.DB, opts ...uow.ManagerOption) (*client, *app.App) {
	a, err := app.New(db, quiet, opts...)
	require.NoError(t, err)
	srv := httptest.NewServer(a.Echo)
	t.Cleanup(srv.Close)
	return &client{t: t, url: srv.URL}, a
}

// do sends a request and decodes the JSON answer into a map.
func (c *client) do(method, path, body string) (int, map[string]any) {
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(res.Body)
	if len(bytes.TrimSpace(b)) > 0 {
		require.NoError(c.t, json.Unmarshal(b, &out), string(b))
	}
	return res.StatusCode, out
}

func (c *client) team(name string, capacity int) int64 {
	status, body := c.do("POST", "/teams", fmt.Sprintf(`{"name":%q,"capacity":%d}`, name, capacity))
	require.Equal(c.t, 201, status, body)
	return int64(body["id"].(float64))
}

func TestAPI(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlx.DB) {
		c, _ := start(t, db)
		status, body := c.do("POST", "/teams", `{"name":"Reds","capacity":2}`)
		require.Equal(t, 201, status)
		assert.Equal(t, map[string]any{"id": body["id"], "name": "Reds", "capacity": 2.0}, body)
		reds := int64(body["id"].(float64))
		blues := c.team("Blues", 1)

		status, body = c.do("POST", fmt.Sprintf("/teams/%d/players", reds), `{"name":"Ann"}`)
		require.Equal(t, 201, status)
		assert.Equal(t, map[string]any{"id": body["id"], "name": "Ann", "team_id": float64(reds)}, body)
		ann := int64(body["id"].(float64))
		status, _ = c.do("POST", fmt.Sprintf("/teams/%d/players", reds), `{"name":"Bob"}`)
		require.Equal(t, 201, status)

		for _, tc := range []struct {
			method, path, body string
			status             int
		}{
			{"POST", fmt.Sprintf("/teams/%d/players", reds), `{"name":"Cid"}`, 409},
			{"POST", "/teams/999/players", `{"name":"Cid"}`, 404},
			{"POST", "/teams/abc/players", `{"name":"Cid"}`, 400},
			{"POST", fmt.Sprintf("/teams/%d/players", reds), `{"name":""}`, 400},
			{"POST", "/teams", `{"name":"X","capacity":0}`, 400},
			{"POST", "/teams", `{"name":"X","capacity":"two"}`, 400},
			{"POST", "/teams", `{"name":"X","capacity":2,"extra":1}`, 400},
			{"POST", "/teams", `not json`, 400},
			{"POST", fmt.Sprintf("/players/%d/move", ann), `{"team_id":0}`, 400},
			{"POST", fmt.Sprintf("/players/%d/move", ann), `{"team_id":999}`, 404},
			{"POST", "/players/999/move", fmt.Sprintf(`{"team_id":%d}`, blues), 404},
			{"GET", "/teams/999", "", 404},
			{"GET", "/nowhere", "", 404},
		} {
			status, body := c.do(tc.method, tc.path, tc.body)
			assert.Equal(t, tc.status, status, "%s %s %s", tc.method, tc.path, tc.body)
			msg, _ := body["error"].(string)
			assert.NotEmpty(t, msg, "errors are JSON {\"error\": ...}")
			for _, leak := range []string{"SQL", "sql", "pq:", "sqlite", "SELECT", "INSERT"} {
				assert.NotContains(t, msg, leak)
			}
		}

		status, body = c.do("POST", fmt.Sprintf("/players/%d/move", ann), fmt.Sprintf(`{"team_id":%d}`, blues))
		require.Equal(t, 200, status)
		assert.Equal(t, float64(blues), body["team_id"])

		status, body = c.do("GET", fmt.Sprintf("/teams/%d", reds), "")
		require.Equal(t, 200, status)
		assert.Equal(t, "Reds", body["name"])
		assert.Equal(t, 2.0, body["capacity"])
		assert.Len(t, body["players"], 1)

		status, body = c.do("GET", "/healthz", "")
		assert.Equal(t, 200, status)
		assert.Equal(t, "ok", body["status"])
	})
}

// rows counts what the database holds for a team.
func rows(t *testing.T, db *sqlx.DB, team int64) (players, roster int) {
	require.NoError(t, db.Get(&players, db.Rebind(`SELECT count(*) FROM players WHERE team_id = ?`), team))
	require.NoError(t, db.Get(&roster, db.Rebind(`SELECT player_count FROM team_rosters WHERE team_id = ?`), team))
	return players, roster
}

func eventCount(t *testing.T, db *sqlx.DB, typ string) int {
	var n int
	require.NoError(t, db.Get(&n, db.Rebind(`SELECT count(*) FROM events WHERE type = ?`), typ))
	return n
}

// hammer sends n concurrent requests and counts the statuses.
func hammer(t *testing.T, n int, send func(i int) int) map[int]int {
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			s := send(i)
			mu.Lock()
			statuses[s]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return statuses
}

func TestConcurrentJoinsFillTheTeamExactly(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlx.DB) {
		c, a := start(t, db)
		var published atomic.Int64
		a.Bus.Subscribe(func(_ context.Context, e domain.Event) {
			if e.Type == domain.PlayerJoined {
				published.Add(1)
			}
		})
		team := c.team("Reds", 5)
		statuses := hammer(t, 64, func(i int) int {
			status, _ := c.do("POST", fmt.Sprintf("/teams/%d/players", team), fmt.Sprintf(`{"name":"p%d"}`, i))
			return status
		})
		assert.Equal(t, map[int]int{201: 5, 409: 59}, statuses, "exactly five 201s, the rest 409, no 5xx")
		players, roster := rows(t, db, team)
		assert.Equal(t, 5, players)
		assert.Equal(t, 5, roster)
		assert.Equal(t, 5, eventCount(t, db, domain.PlayerJoined))
		assert.Equal(t, 1, eventCount(t, db, domain.TeamCreated))
		assert.Equal(t, int64(5), published.Load(), "published after commit only")
	})
}

func TestConcurrentMovesFillTheTeamExactly(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlx.DB) {
		c, _ := start(t, db)
		target := c.team("Target", 5)
		bench := c.team("Bench", 64)
		for i := range 3 {
			status, _ := c.do("POST", fmt.Sprintf("/teams/%d/players", target), fmt.Sprintf(`{"name":"t%d"}`, i))
			require.Equal(t, 201, status)
		}
		var ids []int64
		for i := range 64 {
			status, body := c.do("POST", fmt.Sprintf("/teams/%d/players", bench), fmt.Sprintf(`{"name":"b%d"}`, i))
			require.Equal(t, 201, status)
			ids = append(ids, int64(body["id"].(float64)))
		}
		statuses := hammer(t, 64, func(i int) int {
			status, _ := c.do("POST", fmt.Sprintf("/players/%d/move", ids[i]), fmt.Sprintf(`{"team_id":%d}`, target))
			return status
		})
		assert.Equal(t, map[int]int{200: 2, 409: 62}, statuses)
		players, roster := rows(t, db, target)
		assert.Equal(t, 5, players)
		assert.Equal(t, 5, roster)
		players, roster = rows(t, db, bench)
		assert.Equal(t, 62, players)
		assert.Equal(t, 62, roster)
		assert.Equal(t, 2, eventCount(t, db, domain.PlayerMoved))
	})
}

// begins counts the units' BEGINs.
type begins struct{ n atomic.Int64 }

func (b *begins) Observe(_ context.Context, e uow.Event) {
	if e.Kind == uow.EventBegin {
		b.n.Add(1)
	}
}

func TestHealthzMakesNoTransaction(t *testing.T) {
	dbURL := pgtest.URL(t, "webapp_healthz")
	setup := sqlx.MustOpen("postgres", dbURL)
	require.NoError(t, store.Migrate(context.Background(), setup))
	var name string
	require.NoError(t, setup.Get(&name, `SELECT current_database()`))
	var team int64
	require.NoError(t, setup.Get(&team, `INSERT INTO teams (name, capacity) VALUES ('Reds', 5) RETURNING id`))
	setup.Close()

	// Measured from the admin database, so that measuring adds nothing.
	admin := sqlx.MustOpen("postgres", pgtest.AdminURL(t))
	defer admin.Close()
	xacts := func() int64 {
		var n int64
		require.NoError(t, admin.Get(&n, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`, name))
		return n
	}
	// A backend flushes its statistics before it exits: once the database
	// has no backend left, its counters are complete.
	quiesce := func() int64 {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var n int
			require.NoError(t, admin.Get(&n, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, name))
			if n == 0 {
				break
			}
		}
		return xacts()
	}
	settled := quiesce()

	db := sqlx.MustOpen("postgres", dbURL)
	obs := &begins{}
	c, _ := start(t, db, uow.WithObserver(obs))
	for range 1000 {
		status, _ := c.do("GET", "/healthz", "")
		require.Equal(t, 200, status)
	}
	assert.Zero(t, obs.n.Load(), "no unit began a transaction")
	assert.Zero(t, db.Stats().OpenConnections, "not even a connection was opened")

	// Control: 1000 GETs that do read make the counter move by exactly
	// 1000 (one read-only transaction each), once their backends have
	// exited and flushed their statistics.
	for range 1000 {
		status, _ := c.do("GET", fmt.Sprintf("/teams/%d", team), "")
		require.Equal(t, 200, status)
	}
	assert.Equal(t, int64(1000), obs.n.Load())
	// Each new backend also runs one catalog transaction while starting.
	backends := int64(db.Stats().OpenConnections)
	require.NoError(t, db.Close())
	delta := quiesce() - settled
	assert.Equal(t, 1000+backends, delta, "1000 healthz requests added 0 transactions; the 1000 control GETs added 1000, plus one per backend started")
	t.Logf("pg_stat_database: %d transactions for 1000 healthz + 1000 control GETs on %d backend(s)", delta, backends)
}
