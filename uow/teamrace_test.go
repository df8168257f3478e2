package uow_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// The seed scenario: add a player to a team only if the team has a free
// place. Two requests racing for the last place must not both succeed.

var errTeamFull = errors.New("team is full")

func teamSchema(t testing.TB, db *sqlx.DB) {
	db.MustExec(`CREATE TABLE IF NOT EXISTS race_teams (id serial PRIMARY KEY, capacity int NOT NULL);
		CREATE TABLE IF NOT EXISTS race_players (id serial PRIMARY KEY, team_id int NOT NULL REFERENCES race_teams, name text NOT NULL)`)
}

func newTeam(t testing.TB, db *sqlx.DB, capacity int) int {
	var id int
	require.NoError(t, db.Get(&id, `INSERT INTO race_teams (capacity) VALUES ($1) RETURNING id`, capacity))
	return id
}

// style is one way of writing "add a player if there is room".
type style struct {
	name string
	opts []uow.Option
	// lock, when true, takes the team row FOR UPDATE before counting.
	lock bool
}

var (
	// serializable relies on SSI and retries serialization failures.
	serializable = style{name: "serializable+retry", opts: []uow.Option{
		uow.Isolation(sql.LevelSerializable),
		uow.Retry(retry.Policy{MaxAttempts: 100, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}),
	}}
	// forUpdate serialises the adders on the team row at READ COMMITTED.
	forUpdate = style{name: "select-for-update", lock: true}
	// naive is READ COMMITTED without a lock: it overbooks.
	naive = style{name: "read-committed-no-lock"}
)

// addPlayer runs one attempt to join. beforeWrite, if set, runs between the
// capacity check and the insert (to force an interleaving in tests).
func addPlayer(ctx context.Context, m *uow.Manager, db *sqlx.DB, s style, team int, name string, beforeWrite func(attempt int)) error {
	attempt := 0
	return m.Do(ctx, func(ctx context.Context) error {
		attempt++
		q := repo.From(ctx, db)
		lock := ""
		if s.lock {
			lock = " FOR UPDATE"
		}
		var capacity, taken int
		if err := q.GetContext(ctx, &capacity, `SELECT capacity FROM race_teams WHERE id = $1`+lock, team); err != nil {
			return err
		}
		if err := q.GetContext(ctx, &taken, `SELECT count(*) FROM race_players WHERE team_id = $1`, team); err != nil {
			return err
		}
		if taken >= capacity {
			return errTeamFull
		}
		if beforeWrite != nil {
			beforeWrite(attempt)
		}
		_, err := q.ExecContext(ctx, `INSERT INTO race_players (team_id, name) VALUES ($1, $2)`, team, name)
		return err
	}, s.opts...)
}

// race runs n concurrent adders on a fresh team of the given capacity and
// returns how many succeeded and how many were told the team is full. The
// adders start together. With forced, the worst interleaving is forced
// rather than hoped for: no adder writes before every other one has either
// checked the capacity too or is blocked on a lock (seen in
// pg_stat_activity). Without a lock every adder sees a free place; with
// FOR UPDATE the others queue behind the first and see its write.
func race(t testing.TB, m *uow.Manager, db *sqlx.DB, s style, n, capacity int, forced bool) (ok, full int, team int) {
	team = newTeam(t, db, capacity)
	var before func(int)
	if forced {
		before = forceInterleaving(t, n)
	}
	start := make(chan struct{})
	var okN, fullN atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			err := addPlayer(context.Background(), m, db, s, team, fmt.Sprint("p", i), before)
			switch {
			case err == nil:
				okN.Add(1)
			case errors.Is(err, errTeamFull):
				fullN.Add(1)
			default:
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	return int(okN.Load()), int(fullN.Load()), team
}

// forceInterleaving returns the beforeWrite of race's forced mode: on its
// first attempt an adder that has checked the capacity waits at a gate,
// which opens once the n adders have all checked or are waiting for a lock
// on race_teams. The gate opens once: later adders (FOR UPDATE's queue,
// SERIALIZABLE's retries) go through.
func forceInterleaving(t testing.TB, n int) func(attempt int) {
	monitor := pgtest.Open(t, "uow")
	var checked atomic.Int64
	gate := make(chan struct{})
	go func() {
		defer close(gate)
		deadline := time.Now().Add(time.Minute)
		for {
			var waiting int64
			err := monitor.Get(&waiting, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'
				AND strpos(query, 'race_teams') > 0`)
			if err != nil {
				t.Errorf("pg_stat_activity: %v", err)
				return
			}
			if checked.Load()+waiting >= int64(n) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("forced interleaving: %d checked, %d waiting for a lock, of %d adders", checked.Load(), waiting, n)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func(attempt int) {
		if attempt == 1 {
			checked.Add(1)
			<-gate
		}
	}
}

// maxConns keeps the tests well under the server's max_connections while
// test packages run in parallel; 64 adders then contend for 20 connections.
const maxConns = 20

func TestTeamRaceExactlyFillsTheTeam(t *testing.T) {
	db := pgtest.Open(t, "uow")
	db.SetMaxOpenConns(maxConns)
	teamSchema(t, db)
	for _, s := range []style{serializable, forUpdate} {
		t.Run(s.name, func(t *testing.T) {
			obs := &retries{}
			m := uow.New(db, uow.WithObserver(obs))
			ok, full, team := race(t, m, db, s, 64, 5, false)
			t.Logf("%s: %d retries", s.name, obs.n.Load())
			assert.Equal(t, 5, ok)
			assert.Equal(t, 59, full)
			var players int
			require.NoError(t, db.Get(&players, `SELECT count(*) FROM race_players WHERE team_id = $1`, team))
			assert.Equal(t, 5, players, "exactly the capacity")
		})
	}
}

func TestTeamRaceOverbooksWithoutIsolationOrLock(t *testing.T) {
	db := pgtest.Open(t, "uow")
	db.SetMaxOpenConns(maxConns + 4)
	teamSchema(t, db)
	m := uow.New(db)
	// Every adder checks before any writes (each holds a connection
	// meanwhile, hence fewer adders than above).
	const adders = maxConns + 4
	ok, _, team := race(t, m, db, naive, adders, 5, true)
	var players int
	require.NoError(t, db.Get(&players, `SELECT count(*) FROM race_players WHERE team_id = $1`, team))
	assert.Equal(t, adders, ok, "every adder saw a free place")
	assert.Equal(t, adders, players, "READ COMMITTED without a lock overbooks a team of 5")
}

// TestTeamRaceForcedInterleavingFillsTheTeamExactly runs the interleaving
// that overbooks above under both correct styles: SERIALIZABLE refuses all
// but the first commits and the retries find the team full; FOR UPDATE
// makes the others wait for the first adder's write and see it.
func TestTeamRaceForcedInterleavingFillsTheTeamExactly(t *testing.T) {
	db := pgtest.Open(t, "uow")
	db.SetMaxOpenConns(maxConns + 4)
	teamSchema(t, db)
	const adders = maxConns + 4
	for _, s := range []style{serializable, forUpdate} {
		t.Run(s.name, func(t *testing.T) {
			obs := &retries{}
			m := uow.New(db, uow.WithObserver(obs))
			ok, full, team := race(t, m, db, s, adders, 5, true)
			var players int
			require.NoError(t, db.Get(&players, `SELECT count(*) FROM race_players WHERE team_id = $1`, team))
			assert.Equal(t, 5, ok)
			assert.Equal(t, adders-5, full)
			assert.Equal(t, 5, players)
			if s.lock {
				assert.Zero(t, obs.n.Load(), "the lock queues adders; nothing is refused")
			} else {
				assert.Positive(t, obs.n.Load(), "SERIALIZABLE refused the conflicting commits")
			}
		})
	}
}

// BenchmarkTeamRace measures goodput of the two correct styles: 16 adders race
// for 5 places on a fresh team each iteration.
func BenchmarkTeamRace(b *testing.B) {
	db := pgtest.Open(b, "uow")
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns) // measure transactions, not reconnections
	teamSchema(b, db)
	for _, s := range []style{serializable, forUpdate} {
		b.Run(s.name, func(b *testing.B) {
			obs := &retries{}
			m := uow.New(db, uow.WithObserver(obs))
			adds := 0
			start := time.Now()
			for b.Loop() {
				ok, _, _ := race(b, m, db, s, 16, 5, false)
				if ok != 5 {
					b.Fatalf("%d adds for 5 places", ok)
				}
				adds += ok
			}
			b.ReportMetric(float64(adds)/time.Since(start).Seconds(), "adds/s")
			b.ReportMetric(float64(obs.n.Load())/float64(adds), "retries/add")
		})
	}
}
