package uowpgx_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uowpgx"
)

// The tests of this file run units on pgx's own pool through PgBouncer in
// transaction pooling mode (scripts/pgbouncer.sh; pgtest.PgBouncerURL).
// See docs/pgbouncer.md.

// bouncerModes are pgx's query execution modes that keep nothing on the
// server between transactions, so they work through PgBouncer before 1.21
// (no max_prepared_statements): each statement goes in one round trip, with
// an unnamed statement (exec, cache_describe) or none (simple_protocol).
// pgx's default, cache_statement, does not: TestPgBouncerStatementCache.
var bouncerModes = []string{"exec", "simple_protocol", "cache_describe"}

// withParams adds params (a=b&c=d) to the query string of URL u.
func withParams(u, params string) string {
	if strings.Contains(u, "?") {
		return u + "&" + params
	}
	return u + "?" + params
}

// bouncerPool opens a guarded pgx pool through PgBouncer on u in the given
// query execution mode, and checks at the end of the test, before closing
// it, that no connection is still acquired.
func bouncerPool(t *testing.T, u, mode string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	pool := newPool(t, withParams(u, "default_query_exec_mode="+mode), maxConns)
	t.Cleanup(func() {
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("%d connections still acquired at the end of the test", n)
		}
	})
	return pool
}

// bouncerFixture is a table on a database of its own, reached directly
// (direct: setup and checks) and through PgBouncer (pool: the units').
type bouncerFixture struct {
	url    string // through PgBouncer
	direct *sqlx.DB
	pool   *pgxpool.Pool
	table  string
	m      *uow.Manager
}

func newBouncerFixture(t *testing.T, tag, mode string, maxConns int32) *bouncerFixture {
	t.Helper()
	u := pgtest.PgBouncerURL(t, tag)
	direct := pgtest.Open(t, tag)
	f := &bouncerFixture{url: u, direct: direct, table: pgtest.Table(t, direct, "items", `v text PRIMARY KEY`)}
	f.pool = bouncerPool(t, u, mode, maxConns)
	f.m = uow.New(nil, uowpgx.WithPool("main", f.pool))
	return f
}

func (f *bouncerFixture) exec(ctx context.Context, sql string, args ...any) error {
	_, err := uowpgx.From(ctx, f.pool).Exec(ctx, sql, args...)
	return err
}

func (f *bouncerFixture) insert(ctx context.Context, v string) error {
	return f.exec(ctx, `INSERT INTO `+f.table+` (v) VALUES ($1)`, v)
}

func (f *bouncerFixture) values(t *testing.T) []string {
	t.Helper()
	vs := []string{}
	require.NoError(t, f.direct.Select(&vs, `SELECT v FROM `+f.table+` ORDER BY v`))
	return vs
}

// sqlState returns err's SQLSTATE, or "".
func sqlState(err error) string {
	code, _ := retry.SQLState(err)
	return code
}

// fast retries quickly, with room for a competing transaction on a loaded
// machine.
var fast = retry.Policy{BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxAttempts: 50}

// The unit's semantics on pgx's own pool through PgBouncer, in each query
// execution mode that works there.
func TestPgBouncerSemantics(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(t *testing.T, f *bouncerFixture, marker string)
	}{
		{"commit", func(t *testing.T, f *bouncerFixture, _ string) {
			require.NoError(t, f.m.Do(context.Background(), func(ctx context.Context) error { return f.insert(ctx, "a") }))
			assert.Equal(t, []string{"a"}, f.values(t))
		}},
		{"rollback", func(t *testing.T, f *bouncerFixture, _ string) {
			err := f.m.Do(context.Background(), func(ctx context.Context) error {
				require.NoError(t, f.insert(ctx, "a"))
				return errBoom
			})
			require.ErrorIs(t, err, errBoom)
			assert.Empty(t, f.values(t))
		}},
		{"nested savepoints", func(t *testing.T, f *bouncerFixture, _ string) {
			err := f.m.Do(context.Background(), func(ctx context.Context) error {
				require.NoError(t, f.insert(ctx, "outer"))
				require.ErrorIs(t, f.m.Do(ctx, func(ctx context.Context) error {
					require.NoError(t, f.insert(ctx, "nested"))
					return errBoom // rolls back to the savepoint only
				}, uow.Propagate(uow.Nested)), errBoom)
				require.NoError(t, f.m.Do(ctx, func(ctx context.Context) error {
					return f.insert(ctx, "kept")
				}, uow.Propagate(uow.Nested)))
				return f.insert(ctx, "after")
			})
			require.NoError(t, err)
			assert.Equal(t, []string{"after", "kept", "outer"}, f.values(t))
		}},
		{"a real serialization failure is retried", func(t *testing.T, f *bouncerFixture, _ string) {
			var firstReads sync.WaitGroup
			firstReads.Add(2)
			var mu sync.Mutex
			attempts := 0
			run := func(v string) error {
				attempt := 0
				return f.m.Do(context.Background(), func(ctx context.Context) error {
					attempt++
					mu.Lock()
					attempts++
					mu.Unlock()
					var n int
					if err := uowpgx.From(ctx, f.pool).QueryRow(ctx, `SELECT count(*) FROM `+f.table).Scan(&n); err != nil {
						return err
					}
					if attempt == 1 {
						firstReads.Done()
						firstReads.Wait() // write skew: both read before either writes
					}
					return f.insert(ctx, v)
				}, uow.Isolation(sql.LevelSerializable), uow.Retry(fast), uow.Timeout(time.Minute))
			}
			errs := make(chan error, 2)
			go func() { errs <- run("a") }()
			go func() { errs <- run("b") }()
			require.NoError(t, <-errs)
			require.NoError(t, <-errs)
			assert.Equal(t, []string{"a", "b"}, f.values(t))
			assert.Greater(t, attempts, 2, "a serialization failure was retried")
		}},
		{"Timeout interrupts a statement, on the server too", func(t *testing.T, f *bouncerFixture, marker string) {
			ctx, u := f.m.Begin(context.Background(), uow.Timeout(2*time.Second))
			defer u.Rollback()
			require.NoError(t, f.insert(ctx, "a"))
			done := make(chan error, 1)
			go func() { done <- f.exec(ctx, `SELECT pg_sleep(60) /* `+marker+` */`) }()
			pgtest.WaitRunning(t, f.direct, marker) // then the deadline passes
			require.Error(t, <-done)
			require.ErrorIs(t, u.Commit(), context.DeadlineExceeded)
			pgtest.WaitFinished(t, f.direct, marker)
			assert.Empty(t, f.values(t))
		}},
		{"StatementTimeout is enforced by the server", func(t *testing.T, f *bouncerFixture, marker string) {
			err := f.m.Do(context.Background(), func(ctx context.Context) error {
				require.NoError(t, f.insert(ctx, "a"))
				var st string
				require.NoError(t, uowpgx.From(ctx, f.pool).QueryRow(ctx, `SELECT current_setting('statement_timeout')`).Scan(&st))
				assert.Equal(t, "500ms", st)
				return f.exec(ctx, `SELECT pg_sleep(60) /* `+marker+` */`)
			}, uow.StatementTimeout(500*time.Millisecond), uow.Timeout(time.Minute))
			assert.Equal(t, "57014", sqlState(err), "query_canceled: %v", err)
			assert.Empty(t, f.values(t))
		}},
		{"LockTimeout is enforced by the server", func(t *testing.T, f *bouncerFixture, _ string) {
			f.direct.MustExec(`INSERT INTO ` + f.table + ` (v) VALUES ('locked')`)
			holder, err := f.direct.Beginx()
			require.NoError(t, err)
			defer holder.Rollback()
			holder.MustExec(`UPDATE ` + f.table + ` SET v = 'held' WHERE v = 'locked'`)
			err = f.m.Do(context.Background(), func(ctx context.Context) error {
				return f.exec(ctx, `UPDATE `+f.table+` SET v = 'mine' WHERE v = 'locked'`)
			}, uow.LockTimeout(50*time.Millisecond), uow.Timeout(time.Minute))
			assert.Equal(t, "55P03", sqlState(err), "lock_not_available: %v", err)
			require.NoError(t, holder.Rollback())
			assert.Equal(t, []string{"locked"}, f.values(t))
		}},
		{"cancellation interrupts a running statement", func(t *testing.T, f *bouncerFixture, marker string) {
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx, u := f.m.Begin(parent)
			require.NoError(t, f.insert(ctx, "a"))
			done := make(chan error, 1)
			go func() { done <- f.exec(ctx, `SELECT pg_sleep(60) /* `+marker+` */`) }()
			pgtest.WaitRunning(t, f.direct, marker)
			cancel()
			require.Error(t, <-done)
			require.ErrorIs(t, u.Commit(), context.Canceled)
			pgtest.WaitFinished(t, f.direct, marker)
			assert.Empty(t, f.values(t))
		}},
		{"transaction-scoped advisory locks", func(t *testing.T, f *bouncerFixture, _ string) {
			const key = 4202
			ctx1, u1 := f.m.Begin(context.Background())
			defer u1.Rollback()
			require.NoError(t, uowpgx.AdvisoryLock(ctx1, f.pool, key))
			require.NoError(t, f.m.Do(context.Background(), func(ctx context.Context) error {
				ok, err := uowpgx.TryAdvisoryLock(ctx, f.pool, key)
				assert.False(t, ok, "another unit, on another server connection, finds it taken")
				return err
			}))
			got := make(chan error, 1)
			go func() {
				got <- f.m.Do(context.Background(), func(ctx context.Context) error {
					if err := uowpgx.AdvisoryLock(ctx, f.pool, key); err != nil {
						return err
					}
					return f.insert(ctx, "second")
				}, uow.Timeout(time.Minute))
			}()
			pgtest.WaitBlocked(t, f.direct, "pg_advisory_xact_lock", 1)
			require.NoError(t, f.insert(ctx1, "first"))
			require.NoError(t, u1.Commit()) // the lock goes with the transaction
			require.NoError(t, <-got)
			assert.Equal(t, []string{"first", "second"}, f.values(t))
		}},
	}
	for _, mode := range bouncerModes {
		for i, s := range scenarios {
			t.Run(mode+"/"+s.name, func(t *testing.T) {
				f := newBouncerFixture(t, "uowpgx_pgbouncer_"+mode, mode, 8)
				s.run(t, f, fmt.Sprintf("uowpgx-pgbouncer-%s-%d", mode, i))
				p := pgtest.WaitPgBouncerIdle(t, f.url)
				assert.LessOrEqual(t, p.Servers(), 4, "PgBouncer's pool (default_pool_size = 4): %+v", p)
			})
		}
	}
}

// A unit's settings stay with its transaction: another client handed the
// same server connection next does not inherit them; a session SET, which
// uowkit never sends, does (the contrast shows that the test sees a leak).
func TestPgBouncerSessionStateDoesNotLeak(t *testing.T) {
	ctx := context.Background()
	// A database of its own: PgBouncer's pool for it is this test's, and
	// with one unit at a time it needs one server connection, which every
	// unit below gets (asserted through pg_backend_pid).
	u := pgtest.PgBouncerURL(t, "uowpgx_pgbouncer_leak")
	a := bouncerPool(t, u, "exec", 1) // two clients, as two instances would be
	b := bouncerPool(t, u, "exec", 1)
	ma := uow.New(nil, uowpgx.WithPool("main", a))
	mb := uow.New(nil, uowpgx.WithPool("main", b))
	type session struct {
		pid                    int
		statement, lockTimeout string
	}
	read := func(ctx context.Context, pool *pgxpool.Pool) (s session, err error) {
		err = uowpgx.From(ctx, pool).QueryRow(ctx, `SELECT pg_backend_pid(),
			current_setting('statement_timeout'), current_setting('lock_timeout')`).Scan(&s.pid, &s.statement, &s.lockTimeout)
		return s, err
	}

	var first session
	require.NoError(t, ma.Do(ctx, func(ctx context.Context) error {
		var err error
		first, err = read(ctx, a)
		return err
	}, uow.StatementTimeout(30*time.Second), uow.LockTimeout(20*time.Second)))
	assert.Equal(t, "30s", first.statement)
	assert.Equal(t, "20s", first.lockTimeout)

	var next session
	require.NoError(t, mb.Do(ctx, func(ctx context.Context) error {
		var err error
		next, err = read(ctx, b)
		return err
	}))
	require.Equal(t, first.pid, next.pid, "both units ran on one server connection")
	assert.Equal(t, "0", next.statement, "the first unit's statement_timeout leaked")
	assert.Equal(t, "0", next.lockTimeout, "the first unit's lock_timeout leaked")

	// The contrast: a session SET sent by client a outside a unit stays
	// with the server connection, and client b's next unit inherits it.
	_, err := a.Exec(ctx, `SET statement_timeout = '50ms'`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.Exec(context.Background(), `RESET statement_timeout`) })
	err = mb.Do(ctx, func(ctx context.Context) error {
		s, err := read(ctx, b)
		if err != nil {
			return err
		}
		require.Equal(t, first.pid, s.pid, "still one server connection")
		assert.Equal(t, "50ms", s.statement, "a session SET leaks to another client")
		_, err = uowpgx.From(ctx, b).Exec(ctx, `SELECT pg_sleep(0.2)`)
		return err
	})
	assert.Equal(t, "57014", sqlState(err), "client b's unit was cut by client a's session setting: %v", err)
	_, err = b.Exec(ctx, `RESET statement_timeout`)
	require.NoError(t, err)

	p := pgtest.WaitPgBouncerIdle(t, u)
	assert.Equal(t, 1, p.Servers(), "PgBouncer used one server connection: %+v", p)
}

// 100 concurrent units on a pgx pool through a PgBouncer pool of 4 server
// connections: every unit commits or fails with its own clean error, none
// hangs (each is bounded by its Timeout), the table holds exactly the
// committed units' rows, and no connection is left in use, in the pgx pool
// or in PgBouncer. Units that commit with StatementTimeout and LockTimeout
// share the 4 server connections with units that check, in their own
// transaction, that neither setting is there: a setting leaked from one
// unit to the next would show.
func TestPgBouncerHundredConcurrentUnits(t *testing.T) {
	const units, servers = 100, 4
	f := newBouncerFixture(t, "uowpgx_pgbouncer_hundred", "exec", units)

	// Four units hold the four server connections, so that the other 96
	// certainly queue in PgBouncer.
	var holders []*uow.Unit
	for i := range servers {
		ctx, u := f.m.Begin(context.Background(), uow.Timeout(time.Minute))
		defer u.Rollback()
		require.NoError(t, f.insert(ctx, fmt.Sprintf("holder-%d", i)))
		holders = append(holders, u)
	}
	require.Equal(t, servers, pgtest.PgBouncerPool(t, f.url).ServersActive)

	type result struct {
		i   int
		err error
	}
	results := make(chan result, units)
	for i := servers; i < units; i++ {
		go func() {
			opts := []uow.Option{uow.Timeout(time.Minute)}
			switch i % 5 {
			case 2:
				opts = append(opts, uow.StatementTimeout(20*time.Millisecond))
			case 3:
				opts = append(opts, uow.StatementTimeout(30*time.Second), uow.LockTimeout(20*time.Second))
			}
			err := f.m.Do(context.Background(), func(ctx context.Context) error {
				if err := f.insert(ctx, fmt.Sprintf("unit-%03d", i)); err != nil {
					return err
				}
				switch i % 5 {
				case 1:
					return errBoom
				case 2: // longer than its own statement_timeout
					return f.exec(ctx, `SELECT pg_sleep(0.05)`)
				case 4:
					var st, lt string
					if err := uowpgx.From(ctx, f.pool).QueryRow(ctx, `SELECT current_setting('statement_timeout'), current_setting('lock_timeout')`).Scan(&st, &lt); err != nil {
						return err
					}
					if st != "0" || lt != "0" {
						return fmt.Errorf("settings leaked into this unit: statement_timeout %s, lock_timeout %s", st, lt)
					}
				}
				return nil
			}, opts...)
			results <- result{i, err}
		}()
	}
	pgtest.WaitPgBouncerWaiting(t, f.url, units-servers)
	for _, u := range holders {
		require.NoError(t, u.Commit())
	}

	want := []string{"holder-0", "holder-1", "holder-2", "holder-3"}
	for range units - servers {
		r := <-results
		switch r.i % 5 {
		case 0, 3, 4:
			if assert.NoError(t, r.err, "unit %d", r.i) {
				want = append(want, fmt.Sprintf("unit-%03d", r.i))
			}
		case 1:
			assert.ErrorIs(t, r.err, errBoom, "unit %d", r.i)
		case 2:
			assert.Equal(t, "57014", sqlState(r.err), "unit %d: %v", r.i, r.err)
		}
		assert.False(t, errors.Is(r.err, context.DeadlineExceeded), "unit %d hung until its Timeout", r.i)
	}
	sort.Strings(want)
	assert.Equal(t, want, f.values(t), "the table holds exactly the committed units' rows")
	assert.Zero(t, f.pool.Stat().AcquiredConns())
	p := pgtest.WaitPgBouncerIdle(t, f.url)
	assert.LessOrEqual(t, p.Servers(), servers, "%+v", p)
}

// pgx's default query execution mode (cache_statement) prepares named
// statements and reuses them on later transactions; before PgBouncer 1.21
// (or with max_prepared_statements = 0) the next transaction may run on a
// server connection that never saw the statement, and fails with 26000.
// The modes of bouncerModes keep nothing on the server between
// transactions and pass the same sequence.
func TestPgBouncerStatementCache(t *testing.T) {
	tracked := pgtest.PgBouncerSetting(t, "max_prepared_statements")
	for _, mode := range append([]string{"cache_statement"}, bouncerModes...) {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			// A database of its own, so that PgBouncer's pool for it holds
			// only the server connections this test makes.
			u := pgtest.PgBouncerURL(t, "uowpgx_pgbouncer_cache_"+mode)
			pool := bouncerPool(t, u, mode, 1)
			const q = `SELECT $1::int + 1`
			var n int
			// On the pool's only server connection (say S1)…
			require.NoError(t, pool.QueryRow(ctx, q, 1).Scan(&n))
			// …which another client then holds in a transaction…
			other, err := sqlx.Open("postgres", u)
			require.NoError(t, err)
			defer other.Close()
			holder, err := other.Beginx()
			require.NoError(t, err)
			defer holder.Rollback()
			holder.MustExec(`SELECT 1`)
			// …so that the same statement runs on a new one (S2).
			err = pool.QueryRow(ctx, q, 2).Scan(&n)
			if mode == "cache_statement" && (tracked == "" || tracked == "0") {
				assert.Equal(t, "26000", sqlState(err), "prepared statement does not exist: %v", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, 3, n)
			require.NoError(t, holder.Rollback())
		})
	}
}

// A unit whose BEGIN waits in PgBouncer's queue (every server connection
// taken) gives up at its Timeout: pgx interrupts a BEGIN in flight.
func TestPgBouncerQueuedUnitHonoursTimeout(t *testing.T) {
	f := newBouncerFixture(t, "uowpgx_pgbouncer_queued", "exec", 8)
	var holders []*uow.Unit
	release := func() {
		for _, u := range holders {
			require.NoError(t, u.Commit())
		}
	}
	for i := range 4 {
		ctx, u := f.m.Begin(context.Background(), uow.Timeout(time.Minute))
		defer u.Rollback()
		require.NoError(t, f.insert(ctx, fmt.Sprintf("holder-%d", i)))
		holders = append(holders, u)
	}
	done := make(chan error, 1)
	go func() {
		done <- f.m.Do(context.Background(), func(ctx context.Context) error {
			return f.insert(ctx, "queued")
		}, uow.Timeout(2*time.Second))
	}()
	pgtest.WaitPgBouncerWaiting(t, f.url, 1) // then the deadline passes
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(30 * time.Second):
		release()
		t.Fatal("the unit waited for a server connection beyond its Timeout")
	}
	release()
	assert.Equal(t, []string{"holder-0", "holder-1", "holder-2", "holder-3"}, f.values(t))
	pgtest.WaitPgBouncerIdle(t, f.url)
}
