package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/examples/webapp/app"
	"github.com/uowkit/uowkit/examples/webapp/domain"
	"github.com/uowkit/uowkit/examples/webapp/events"
	"github.com/uowkit/uowkit/examples/webapp/store"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

func TestAPI(t *testing.T) {
	backends(t, func(t *testing.T, e env) {
		c, _ := start(t, e.db, quiet)
		status, body := c.do("POST", "/teams", `{"name":"Reds","capacity":2}`)
		require.Equal(t, 201, status)
		assert.Equal(t, map[string]any{"id": body["id"], "name": "Reds", "capacity": 2.0}, body)
		reds := int64(body["id"].(float64))
		blues := c.team("Blues", 1)

		status, body = c.do("POST", fmt.Sprintf("/teams/%d/players", reds), `{"name":" Ann "}`)
		require.Equal(t, 201, status)
		assert.Equal(t, map[string]any{"id": body["id"], "name": "Ann", "team_id": float64(reds)}, body)
		ann := int64(body["id"].(float64))
		bob := c.player(reds, "Bob")

		for _, tc := range []struct {
			method, path, body string
			status             int
		}{
			{"POST", fmt.Sprintf("/teams/%d/players", reds), `{"name":"Cid"}`, 409},
			{"POST", "/teams/999/players", `{"name":"Cid"}`, 404},
			{"POST", "/teams/abc/players", `{"name":"Cid"}`, 400},
			{"POST", fmt.Sprintf("/teams/%d/players", blues), `{"name":""}`, 400},
			{"POST", fmt.Sprintf("/teams/%d/players", blues), `{"name":"nul\u0000"}`, 400},
			{"POST", fmt.Sprintf("/teams/%d/players", blues), `{"name":"Cid"} trailing`, 400},
			{"POST", "/teams", `{"name":"X","capacity":0}`, 400},
			{"POST", "/teams", `{"name":"X","capacity":"two"}`, 400},
			{"POST", "/teams", `{"name":"X","capacity":2,"extra":1}`, 400},
			{"POST", "/teams", `{"name":"nul\u0000byte","capacity":2}`, 400},
			{"POST", "/teams", `{"name":"two\nlines","capacity":2}`, 400},
			{"POST", "/teams", `{"name":"` + strings.Repeat("x", domain.MaxName+1) + `","capacity":2}`, 400},
			{"POST", "/teams", `{"name":"Trailing","capacity":2} garbage`, 400},
			{"POST", "/teams", `{"name":"Twice","capacity":2}{"name":"Twice","capacity":2}`, 400},
			{"POST", "/teams", `not json`, 400},
			{"POST", fmt.Sprintf("/players/%d/move", ann), `{"team_id":0}`, 400},
			{"POST", fmt.Sprintf("/players/%d/move", ann), `{"team_id":999}`, 404},
			{"POST", "/players/999/move", fmt.Sprintf(`{"team_id":%d}`, blues), 404},
			{"GET", "/teams/999", "", 404},
			{"GET", "/teams/999/history", "", 404},
			{"GET", "/nowhere", "", 404},
			{"PUT", "/teams", "", 405},
		} {
			status, body := c.do(tc.method, tc.path, tc.body)
			assert.Equal(t, tc.status, status, "%s %s %s", tc.method, tc.path, tc.body)
			msg, _ := body["error"].(string)
			assert.NotEmpty(t, msg, "errors are JSON {\"error\": ...}")
			for _, leak := range leaks {
				assert.NotContains(t, msg, leak)
			}
		}
		assert.Equal(t, 2, count(t, e.db, `SELECT count(*) FROM teams`), "no bad input was stored")
		assert.Equal(t, 2, count(t, e.db, `SELECT count(*) FROM players`))

		status, body, h := c.doWith("POST", fmt.Sprintf("/players/%d/move", ann), fmt.Sprintf(`{"team_id":%d}`, blues), nil)
		require.Equal(t, 200, status)
		assert.Equal(t, map[string]any{"id": float64(ann), "name": "Ann", "team_id": float64(blues)}, body)
		moveToken := h.Get("X-Consistency-Token")
		require.NotEmpty(t, moveToken)

		// Moving a player to the team it is on is a no-op: 200, even though
		// Blues is full now, and no event.
		status, body = c.do("POST", fmt.Sprintf("/players/%d/move", ann), fmt.Sprintf(`{"team_id":%d}`, blues))
		require.Equal(t, 200, status)
		assert.Equal(t, map[string]any{"id": float64(ann), "name": "Ann", "team_id": float64(blues)}, body)
		assert.Equal(t, 1, eventCount(t, e.db, domain.PlayerMoved))
		players, roster := rows(t, e.db, blues)
		assert.Equal(t, [2]int{1, 1}, [2]int{players, roster})

		// The read side is the projection: a read with the move's token
		// shows it.
		refused := c.sendWith(context.Background(), "POST", fmt.Sprintf("/teams/%d/players", blues), `{"name":"Dan"}`, nil)
		require.Equal(t, 409, refused.status)
		assert.Empty(t, refused.header.Get("X-Consistency-Token"), "a refused command has no token")
		moved := c.sendWith(context.Background(), "POST", fmt.Sprintf("/players/%d/move", ann), fmt.Sprintf(`{"team_id":%d}`, blues), nil)
		assert.Empty(t, moved.header.Get("X-Consistency-Token"), "a no-op move records no event")
		status, _, h = c.fresh("GET", fmt.Sprintf("/teams/%d", reds), c.token())
		require.Equal(t, 200, status)
		assert.Regexp(t, `^[0-9]+\.[0-9]{3}$`, h.Get("X-Projection-Lag"), "milliseconds")
		status, body, _ = c.fresh("GET", fmt.Sprintf("/teams/%d", reds), moveToken)
		require.Equal(t, 200, status)
		assert.Equal(t, map[string]any{"id": float64(reds), "name": "Reds", "capacity": 2.0,
			"players": []any{map[string]any{"id": float64(bob), "name": "Bob"}}}, body)
		status, body, _ = c.fresh("GET", fmt.Sprintf("/teams/%d", blues), moveToken)
		require.Equal(t, 200, status)
		assert.Equal(t, []any{map[string]any{"id": float64(ann), "name": "Ann"}}, body["players"])
		status, body, _ = c.fresh("GET", fmt.Sprintf("/teams/%d/history", blues), moveToken)
		require.Equal(t, 200, status)
		history := body["history"].([]any)
		require.Len(t, history, 1)
		entry := history[0].(map[string]any)
		assert.Equal(t, moveToken, entry["event_id"])
		assert.Equal(t, map[string]any{"event_id": moveToken, "type": "player_moved", "player_id": float64(ann), "player_name": "Ann",
			"from_team_id": float64(reds), "to_team_id": float64(blues), "occurred_at": entry["occurred_at"]}, entry)
		status, body, _ = c.fresh("GET", fmt.Sprintf("/teams/%d/history", reds), moveToken)
		require.Equal(t, 200, status)
		assert.Len(t, body["history"], 3, "two joins and the move out")

		status, body = c.do("GET", "/healthz", "")
		assert.Equal(t, 200, status)
		assert.Equal(t, "ok", body["status"])
	})
}

func TestConcurrentJoinsFillTheTeamExactly(t *testing.T) {
	backends(t, func(t *testing.T, e env) {
		c, _ := start(t, e.db, quiet)
		team := c.team("Reds", 5)
		statuses := hammer(64, func(i int) int {
			status, _ := c.do("POST", fmt.Sprintf("/teams/%d/players", team), fmt.Sprintf(`{"name":"p%d"}`, i))
			return status
		})
		assert.Equal(t, map[int]int{201: 5, 409: 59}, statuses, "exactly five 201s, the rest 409, no 5xx")
		players, roster := rows(t, e.db, team)
		assert.Equal(t, 5, players)
		assert.Equal(t, 5, roster)
		assert.Equal(t, 5, eventCount(t, e.db, domain.PlayerJoined))
		assert.Equal(t, 1, eventCount(t, e.db, domain.TeamCreated))
		published := c.published(e)
		assert.Len(t, published[events.Subject(domain.PlayerJoined)], 5, "the refused joins published nothing")
		assert.Len(t, published[events.Subject(domain.TeamCreated)], 1)
	})
}

func TestConcurrentMovesFillTheTeamExactly(t *testing.T) {
	backends(t, func(t *testing.T, e env) {
		c, _ := start(t, e.db, quiet)
		target := c.team("Target", 5)
		bench := c.team("Bench", 64)
		var ids []int64
		for i := range 64 {
			ids = append(ids, c.player(bench, fmt.Sprintf("b%d", i)))
		}
		statuses := hammer(64, func(i int) int {
			status, _ := c.do("POST", fmt.Sprintf("/players/%d/move", ids[i]), fmt.Sprintf(`{"team_id":%d}`, target))
			return status
		})
		assert.Equal(t, map[int]int{200: 5, 409: 59}, statuses, "exactly five 200s, the rest 409, no 5xx")
		players, roster := rows(t, e.db, target)
		assert.Equal(t, 5, players)
		assert.Equal(t, 5, roster)
		players, roster = rows(t, e.db, bench)
		assert.Equal(t, 59, players)
		assert.Equal(t, 59, roster)
		assert.Equal(t, 5, eventCount(t, e.db, domain.PlayerMoved))
		assert.Len(t, c.published(e)[events.Subject(domain.PlayerMoved)], 5)
	})
}

// The service's pool (app.Open) is opened on a uow.Guard connector: a
// statement sent on the pool itself while its context carries a unit (a
// repository handed the pool instead of the unit's handle) fails with
// uow.ErrAutocommit and sends nothing, instead of committing at once
// whatever becomes of the unit. Through repo.From it joins the unit.
func TestPoolRefusesAutocommitInAUnit(t *testing.T) {
	backends(t, func(t *testing.T, e env) {
		insert := e.db.Rebind(`INSERT INTO teams (name, capacity) VALUES (?, 1)`)
		err := uow.New(e.db).Do(context.Background(), func(ctx context.Context) error {
			_, err := e.db.ExecContext(ctx, insert, "pool")
			require.ErrorIs(t, err, uow.ErrAutocommit)
			_, err = repo.From(ctx, e.db).ExecContext(ctx, insert, "unit")
			return err
		})
		require.NoError(t, err, "the refused statement did not spoil the unit")
		assert.Zero(t, count(t, e.db, `SELECT count(*) FROM teams WHERE name = 'pool'`))
		assert.Equal(t, 1, count(t, e.db, `SELECT count(*) FROM teams WHERE name = 'unit'`))
		_, err = e.db.ExecContext(context.Background(), insert, "outside")
		require.NoError(t, err, "outside a unit the pool autocommits as usual")
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
	dbURL := pgtest.FreshURL(t, "webapp_healthz")
	setup := sqlx.MustOpen("postgres", dbURL)
	require.NoError(t, store.Migrate(context.Background(), setup))
	var name string
	require.NoError(t, setup.Get(&name, `SELECT current_database()`))
	var team int64
	require.NoError(t, setup.Get(&team, `INSERT INTO teams (name, capacity) VALUES ('Reds', 5) RETURNING id`))
	setup.MustExec(`INSERT INTO team_view (team_id, name, capacity) VALUES ($1, 'Reds', 5)`, team)
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
	// Without the relay and the projector, whose statements would count.
	c, _ := startEvents(t, db, quiet, app.Options{Manager: []uow.ManagerOption{uow.WithObserver(uow.ObserverFunc(obs.Observe))}},
		app.EventsConfig{NoRelay: true, NoProjector: true})
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
