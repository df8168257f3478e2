package uow_test

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

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// The tests of this file run units through PgBouncer in transaction pooling
// mode (scripts/pgbouncer.sh; pgtest.PgBouncerURL): every transaction of a
// client may run on another server connection, and each server connection
// serves many clients in turn. See docs/pgbouncer.md.

// errBouncerBoom is a callback's own failure.
var errBouncerBoom = errors.New("boom")

// bouncerDriver is a database/sql driver run through PgBouncer.
type bouncerDriver struct {
	name, driver string
	params       string // added to the URL
}

// bouncerDrivers are the database/sql drivers run through PgBouncer.
var bouncerDrivers = []bouncerDriver{
	{"libpq", "postgres", ""},
	// pgx caches named prepared statements per client connection by
	// default, which PgBouncer before 1.21 (max_prepared_statements) does
	// not carry from one server connection to the next: the exec mode
	// sends each statement in one round trip with an unnamed statement.
	{"pgx", "pgx", "default_query_exec_mode=exec"},
}

// withParams adds params (a=b&c=d) to the query string of URL u.
func withParams(u, params string) string {
	if params == "" {
		return u
	}
	if strings.Contains(u, "?") {
		return u + "&" + params
	}
	return u + "?" + params
}

// openBouncer opens a pool through PgBouncer on u with driver, closed at
// the end of the test after checking that no connection is still in use.
func openBouncer(t *testing.T, driver, u string, maxOpen int) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open(driver, u)
	require.NoError(t, err)
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(max(maxOpen, 2))
	t.Cleanup(func() {
		if n := db.Stats().InUse; n != 0 {
			t.Errorf("%d connections still in use at the end of the test", n)
		}
		db.Close()
	})
	return db
}

// bouncerFixture is a table on a database of its own, reached directly
// (direct: setup and checks, outside any unit) and through PgBouncer
// (db: what the units run on).
type bouncerFixture struct {
	url    string // db's URL, through PgBouncer
	direct *sqlx.DB
	db     *sqlx.DB
	table  string
	m      *uow.Manager
}

func newBouncerFixture(t *testing.T, tag, driver, params string, maxOpen int) *bouncerFixture {
	t.Helper()
	u := pgtest.PgBouncerURL(t, tag)
	direct := pgtest.Open(t, tag)
	f := &bouncerFixture{url: u, direct: direct, table: newTable(t, direct)}
	f.db = openBouncer(t, driver, withParams(u, params), maxOpen)
	f.m = uow.New(f.db)
	return f
}

func (f *bouncerFixture) insert(ctx context.Context, v string) error {
	_, err := repo.From(ctx, f.db).ExecContext(ctx, `INSERT INTO `+f.table+` (v) VALUES ($1)`, v)
	return err
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

// The unit's semantics through PgBouncer, for each database/sql driver.
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
				return errBouncerBoom
			})
			require.ErrorIs(t, err, errBouncerBoom)
			assert.Empty(t, f.values(t))
		}},
		{"nested savepoints", func(t *testing.T, f *bouncerFixture, _ string) {
			err := f.m.Do(context.Background(), func(ctx context.Context) error {
				require.NoError(t, f.insert(ctx, "outer"))
				require.ErrorIs(t, f.m.Do(ctx, func(ctx context.Context) error {
					require.NoError(t, f.insert(ctx, "nested"))
					return errBouncerBoom // rolls back to the savepoint only
				}, uow.Propagate(uow.Nested)), errBouncerBoom)
				require.NoError(t, f.m.Do(ctx, func(ctx context.Context) error {
					return f.insert(ctx, "kept")
				}, uow.Propagate(uow.Nested)))
				return f.insert(ctx, "after")
			})
			require.NoError(t, err)
			assert.Equal(t, []string{"after", "kept", "outer"}, f.values(t))
		}},
		{"a real serialization failure is retried", func(t *testing.T, f *bouncerFixture, _ string) {
			// Write skew: both read the count, wait for each other, then
			// insert; one of them fails with 40001 and runs again.
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
					if err := repo.From(ctx, f.db).GetContext(ctx, &n, `SELECT count(*) FROM `+f.table); err != nil {
						return err
					}
					if attempt == 1 {
						firstReads.Done()
						firstReads.Wait()
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
			go func() {
				_, err := repo.From(ctx, f.db).ExecContext(ctx, `SELECT pg_sleep(60) /* `+marker+` */`)
				done <- err
			}()
			pgtest.WaitRunning(t, f.direct, marker) // then the deadline passes
			require.Error(t, <-done)
			require.ErrorIs(t, u.Commit(), context.DeadlineExceeded)
			pgtest.WaitFinished(t, f.direct, marker) // the cancel went through PgBouncer
			assert.Empty(t, f.values(t))
		}},
		{"StatementTimeout is enforced by the server", func(t *testing.T, f *bouncerFixture, marker string) {
			err := f.m.Do(context.Background(), func(ctx context.Context) error {
				require.NoError(t, f.insert(ctx, "a"))
				var st string
				require.NoError(t, repo.From(ctx, f.db).GetContext(ctx, &st, `SELECT current_setting('statement_timeout')`))
				assert.Equal(t, "500ms", st)
				_, err := repo.From(ctx, f.db).ExecContext(ctx, `SELECT pg_sleep(60) /* `+marker+` */`)
				return err
			}, uow.StatementTimeout(500*time.Millisecond), uow.Timeout(time.Minute))
			assert.Equal(t, "57014", sqlState(err), "query_canceled: %v", err)
			assert.Empty(t, f.values(t))
		}},
		{"LockTimeout is enforced by the server", func(t *testing.T, f *bouncerFixture, marker string) {
			f.direct.MustExec(`INSERT INTO ` + f.table + ` (v) VALUES ('locked')`)
			holder, err := f.direct.Beginx()
			require.NoError(t, err)
			defer holder.Rollback()
			holder.MustExec(`UPDATE ` + f.table + ` SET v = 'held' WHERE v = 'locked'`)
			err = f.m.Do(context.Background(), func(ctx context.Context) error {
				_, err := repo.From(ctx, f.db).ExecContext(ctx, `UPDATE `+f.table+` SET v = 'mine' WHERE v = 'locked' /* `+marker+` */`)
				return err
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
			go func() {
				_, err := repo.From(ctx, f.db).ExecContext(ctx, `SELECT pg_sleep(60) /* `+marker+` */`)
				done <- err
			}()
			pgtest.WaitRunning(t, f.direct, marker)
			cancel()
			require.Error(t, <-done)
			require.ErrorIs(t, u.Commit(), context.Canceled)
			pgtest.WaitFinished(t, f.direct, marker)
			assert.Empty(t, f.values(t))
		}},
		{"transaction-scoped advisory locks", func(t *testing.T, f *bouncerFixture, _ string) {
			const key = 4201
			ctx1, u1 := f.m.Begin(context.Background())
			defer u1.Rollback()
			require.NoError(t, uow.AdvisoryLock(ctx1, f.db, key))
			// Another unit, on another server connection, finds it taken.
			require.NoError(t, f.m.Do(context.Background(), func(ctx context.Context) error {
				ok, err := uow.TryAdvisoryLock(ctx, f.db, key)
				assert.False(t, ok)
				return err
			}))
			got := make(chan error, 1)
			go func() {
				got <- f.m.Do(context.Background(), func(ctx context.Context) error {
					if err := uow.AdvisoryLock(ctx, f.db, key); err != nil {
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
	for _, d := range bouncerDrivers {
		for i, s := range scenarios {
			t.Run(d.name+"/"+s.name, func(t *testing.T) {
				f := newBouncerFixture(t, "pgbouncer_"+d.name, d.driver, d.params, 8)
				s.run(t, f, fmt.Sprintf("pgbouncer-%s-%d", d.name, i))
				p := pgtest.WaitPgBouncerIdle(t, f.url)
				assert.LessOrEqual(t, p.Servers(), 4, "PgBouncer's pool (default_pool_size = 4): %+v", p)
			})
		}
	}
}

// A unit's settings stay with its transaction: the next client that
// PgBouncer hands the same server connection does not inherit them. A
// session SET, which uowkit never sends, leaks: the contrast, on a pinned
// connection (Unit.Conn), shows that this test sees a leak when there is
// one, and why Unit.Conn is unsafe behind PgBouncer.
func TestPgBouncerSessionStateDoesNotLeak(t *testing.T) {
	for _, d := range bouncerDrivers {
		t.Run(d.name, func(t *testing.T) {
			// A database of its own, so that PgBouncer's pool for it is
			// this test's alone: with units one at a time, PgBouncer needs
			// one server connection, and every unit below gets it
			// (asserted through pg_backend_pid).
			tag := "pgbouncer_leak_" + d.name
			u := pgtest.PgBouncerURL(t, tag)
			// Two clients, as two application instances would be.
			a := openBouncer(t, d.driver, withParams(u, d.params), 1)
			b := openBouncer(t, d.driver, withParams(u, d.params), 1)
			ma, mb := uow.New(a), uow.New(b)
			type session struct {
				Pid         int    `db:"pid"`
				Statement   string `db:"st"`
				LockTimeout string `db:"lt"`
			}
			read := func(ctx context.Context, db *sqlx.DB) (s session, err error) {
				err = repo.From(ctx, db).GetContext(ctx, &s, `SELECT pg_backend_pid() AS pid,
					current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt`)
				return s, err
			}

			var first session
			require.NoError(t, ma.Do(context.Background(), func(ctx context.Context) error {
				var err error
				first, err = read(ctx, a)
				return err
			}, uow.StatementTimeout(30*time.Second), uow.LockTimeout(20*time.Second)))
			assert.Equal(t, "30s", first.Statement)
			assert.Equal(t, "20s", first.LockTimeout)

			var next session
			require.NoError(t, mb.Do(context.Background(), func(ctx context.Context) error {
				var err error
				next, err = read(ctx, b)
				return err
			}))
			require.Equal(t, first.Pid, next.Pid, "both units ran on one server connection")
			assert.Equal(t, "0", next.Statement, "the first unit's statement_timeout leaked")
			assert.Equal(t, "0", next.LockTimeout, "the first unit's lock_timeout leaked")

			// The contrast: a session SET on a pinned connection of client
			// a (Unit.Conn, documented as unsafe behind PgBouncer) stays
			// with the server connection when the unit closes the pinned
			// one, and client b's next unit inherits it.
			ctx, pin := ma.Begin(context.Background())
			c, err := pin.Conn(ctx, a)
			require.NoError(t, err)
			_, err = c.ExecContext(ctx, `SET statement_timeout = '50ms'`)
			require.NoError(t, err)
			t.Cleanup(func() { _, _ = b.Exec(`RESET statement_timeout`) })
			require.NoError(t, pin.Commit()) // closes the pinned connection, on the client's side only
			err = mb.Do(context.Background(), func(ctx context.Context) error {
				s, err := read(ctx, b)
				if err != nil {
					return err
				}
				require.Equal(t, first.Pid, s.Pid, "still one server connection")
				assert.Equal(t, "50ms", s.Statement, "a session SET leaks to another client")
				_, err = repo.From(ctx, b).ExecContext(ctx, `SELECT pg_sleep(0.2)`)
				return err
			})
			assert.Equal(t, "57014", sqlState(err), "client b's unit was cut by client a's session setting: %v", err)
			_, err = b.Exec(`RESET statement_timeout`)
			require.NoError(t, err)

			p := pgtest.WaitPgBouncerIdle(t, u)
			assert.Equal(t, 1, p.Servers(), "PgBouncer used one server connection: %+v", p)
		})
	}
}

// 100 concurrent units through a PgBouncer pool of 4 server connections:
// every unit commits or fails with its own clean error, none hangs (each is
// bounded by its Timeout), the table holds exactly the committed units'
// rows, and no connection is left in use, on the client or in PgBouncer.
// Units that commit with StatementTimeout and LockTimeout share the 4
// server connections with units that check, in their own transaction,
// that neither setting is there: a setting leaked from one unit to the
// next would show.
func TestPgBouncerHundredConcurrentUnits(t *testing.T) {
	const units, servers = 100, 4
	for _, d := range bouncerDrivers {
		t.Run(d.name, func(t *testing.T) {
			f := newBouncerFixture(t, "pgbouncer_hundred_"+d.name, d.driver, d.params, 0)

			// Four units hold the four server connections, so that the
			// other 96 certainly queue in PgBouncer.
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
						q := repo.From(ctx, f.db)
						if err := f.insert(ctx, fmt.Sprintf("unit-%03d", i)); err != nil {
							return err
						}
						switch i % 5 {
						case 1:
							return errBouncerBoom
						case 2: // longer than its own statement_timeout
							_, err := q.ExecContext(ctx, `SELECT pg_sleep(0.05)`)
							return err
						case 4:
							return noSettings(ctx, q)
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
					assert.ErrorIs(t, r.err, errBouncerBoom, "unit %d", r.i)
				case 2:
					assert.Equal(t, "57014", sqlState(r.err), "unit %d: %v", r.i, r.err)
				}
				assert.False(t, errors.Is(r.err, context.DeadlineExceeded), "unit %d hung until its Timeout", r.i)
			}
			sort.Strings(want)
			assert.Equal(t, want, f.values(t), "the table holds exactly the committed units' rows")
			assert.Zero(t, f.db.Stats().InUse)
			p := pgtest.WaitPgBouncerIdle(t, f.url)
			assert.LessOrEqual(t, p.Servers(), servers, "%+v", p)
		})
	}
}

// noSettings fails unless the transaction of q runs with the server's
// default statement_timeout and lock_timeout (0: none).
func noSettings(ctx context.Context, q repo.Querier) error {
	var st, lt string
	if err := q.QueryRowxContext(ctx, `SELECT current_setting('statement_timeout'), current_setting('lock_timeout')`).Scan(&st, &lt); err != nil {
		return err
	}
	if st != "0" || lt != "0" {
		return fmt.Errorf("settings leaked into this unit: statement_timeout %s, lock_timeout %s", st, lt)
	}
	return nil
}

// A unit whose BEGIN waits in PgBouncer's queue (every server connection
// taken) gives up at its Timeout, with pgx, which interrupts a BEGIN in
// flight, and with lib/pq, which sends BEGIN without watching the context:
// the unit runs a database/sql BEGIN on a goroutine of its own and stops
// waiting for it when the context ends (the BEGIN, answered later, is
// rolled back).
func TestPgBouncerQueuedUnitHonoursTimeout(t *testing.T) {
	for _, d := range bouncerDrivers {
		t.Run(d.name, func(t *testing.T) { queuedUnitHonoursTimeout(t, d) })
	}
}

func queuedUnitHonoursTimeout(t *testing.T, d bouncerDriver) {
	f := newBouncerFixture(t, "pgbouncer_queued_"+d.name, d.driver, d.params, 0)
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
