package uowotel_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"

	"github.com/uowkit/uowkit/internal/faultproxy"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

func TestCommit(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	db := pgtest.Open(t, "uowotel")
	tbl := newTable(t, db)
	m := uow.New(db, uow.WithObserver(o.obs))

	ctx, req := o.parent("request")
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error { return insert(ctx, db, tbl, "a") }))
	req.End()

	assert.Equal(t, `request
  uow.unit
    uow.begin default
    uow.commit default
`, o.outline())
	unit := o.one(t, "uow.unit")
	assert.Equal(t, map[string]any{
		"uow.isolation": "Default",
		"uow.read_only": false,
		"uow.sources":   []string{"default"},
		"uow.outcome":   "committed",
	}, attrsOf(unit))
	assert.Equal(t, codes.Unset, unit.Status().Code)
	assert.Equal(t, map[string]any{"uow.source": "default", "db.operation.name": "BEGIN"}, attrsOf(o.one(t, "uow.begin")))
	assert.Equal(t, map[string]any{"uow.source": "default", "db.operation.name": "COMMIT"}, attrsOf(o.one(t, "uow.commit")))
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=committed}": 1,
		"uow.commit.duration{uow.source=default}":  1,
	}, o.points(t))
}

func TestRollback(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	db := pgtest.Open(t, "uowotel")
	m := uow.New(db, uow.WithObserver(o.obs))
	errNo := errors.New("no")

	ctx, req := o.parent("request")
	err := m.Do(ctx, func(ctx context.Context) error {
		var n int
		if err := repo.From(ctx, db).GetContext(ctx, &n, `SELECT 1`); err != nil {
			return err
		}
		return errNo
	}, uow.Isolation(sql.LevelRepeatableRead), uow.ReadOnly())
	require.ErrorIs(t, err, errNo)
	req.End()

	assert.Equal(t, `request
  uow.unit
    uow.begin default
    uow.rollback default
`, o.outline())
	unit := o.one(t, "uow.unit")
	assert.Equal(t, map[string]any{
		"uow.isolation": "Repeatable Read",
		"uow.read_only": true,
		"uow.sources":   []string{"default"},
		"uow.outcome":   "rolled back",
	}, attrsOf(unit))
	assert.Equal(t, codes.Unset, unit.Status().Code, "a rollback the application asked for is not an error of the unit")
	assert.Equal(t, map[string]any{"uow.source": "default", "db.operation.name": "ROLLBACK"}, attrsOf(o.one(t, "uow.rollback")))
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=rolled back}": 1,
		"uow.rollbacks{uow.outcome=rolled back}":     1,
	}, o.points(t))
}

// Commit refuses a unit marked rollback-only: a failure when a statement
// failed and the application went on, not one when the application marked
// it itself (SetRollbackOnly, a dry run).
func TestRollbackOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// mark makes the unit rollback-only.
		mark    func(ctx context.Context, db *sqlx.DB) error
		outline string
		failure map[string]any // the failure's attributes, nil for none
	}{
		{"a failed statement", func(ctx context.Context, db *sqlx.DB) error {
			var n int
			if err := repo.From(ctx, db).GetContext(ctx, &n, `SELECT 1/0`); err == nil {
				return errors.New("no division by zero")
			}
			return nil // ignores the failure: Commit must not commit
		}, `request
  uow.unit ERROR
    uow.begin default
    uow.rollback default
`, map[string]any{"uow.sqlstate": "22012", "error.type": "22012"}},
		{"SetRollbackOnly", func(ctx context.Context, _ *sqlx.DB) error {
			return uow.SetRollbackOnly(ctx)
		}, `request
  uow.unit
    uow.begin default
    uow.rollback default
`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newOtel(t)
			db := pgtest.Open(t, "uowotel")
			tbl := newTable(t, db)
			m := uow.New(db, uow.WithObserver(o.obs))

			ctx, req := o.parent("request")
			err := m.Do(ctx, func(ctx context.Context) error {
				if err := insert(ctx, db, tbl, "a"); err != nil {
					return err
				}
				return tc.mark(ctx, db)
			})
			require.ErrorIs(t, err, uow.ErrRollbackOnly)
			req.End()

			assert.Equal(t, tc.outline, o.outline())
			unit := o.one(t, "uow.unit")
			a := attrsOf(unit)
			assert.Equal(t, "rollback-only", a["uow.outcome"])
			if tc.failure == nil {
				assert.NotContains(t, a, "error.type")
				assert.Empty(t, exceptions(unit))
			} else {
				for k, v := range tc.failure {
					assert.Equal(t, v, a[k], k)
				}
				assert.Equal(t, err.Error(), unit.Status().Description)
				assert.Equal(t, []string{err.Error()}, exceptions(unit))
			}
			assert.Equal(t, map[string]int64{
				"uow.unit.duration{uow.outcome=rollback-only}": 1,
				"uow.rollbacks{uow.outcome=rollback-only}":     1,
			}, o.points(t))
		})
	}
}

// A serialization failure, at a statement (raised by the server) or at
// COMMIT (a real write skew under SERIALIZABLE), is retried: each attempt
// is a unit span of its own, with the backoff between them.
func TestRetriedSerializationFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		outline string
		// fail makes the first attempt fail.
		fail func(t *testing.T, db *sqlx.DB, tbl string) func(ctx context.Context) error
	}{
		{"at a statement", `request
  uow.unit ERROR
    uow.begin default
    uow.rollback default
  uow.retry
  uow.unit
    uow.begin default
    uow.commit default
`, func(_ *testing.T, db *sqlx.DB, _ string) func(ctx context.Context) error {
			return func(ctx context.Context) error {
				_, err := repo.From(ctx, db).ExecContext(ctx, raise40001)
				return err
			}
		}},
		{"at COMMIT", `request
  uow.unit ERROR
    uow.begin default
    uow.commit default ERROR
  uow.retry
  uow.unit
    uow.begin default
    uow.commit default
`, writeSkew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newOtel(t)
			db := pgtest.Open(t, "uowotel")
			tbl := newTable(t, db)
			m := uow.New(db, uow.WithObserver(o.obs))
			fail := tc.fail(t, db, tbl)
			attempts := 0
			ctx, req := o.parent("request")
			err := m.Do(ctx, func(ctx context.Context) error {
				attempts++
				if err := insert(ctx, db, tbl, fmt.Sprint("attempt", attempts)); err != nil {
					return err
				}
				if attempts == 1 {
					return fail(ctx)
				}
				return nil
			}, uow.Isolation(sql.LevelSerializable), uow.Retry(fast))
			require.NoError(t, err)
			req.End()
			require.Equal(t, 2, attempts)

			assert.Equal(t, tc.outline, o.outline())
			units := o.named("uow.unit")
			for i, u := range units {
				assert.Equal(t, int64(i+1), attrs(u)["uow.attempt"].AsInt64(), "each attempt is a unit span")
				assert.Equal(t, "Serializable", attrs(u)["uow.isolation"].AsString())
			}
			rs := o.one(t, "uow.retry")
			a := attrsOf(rs)
			assert.Equal(t, int64(1), a["uow.retry.attempt"], "the attempt that failed")
			assert.Greater(t, a["uow.retry.delay"], 0.0)
			assert.Equal(t, "40001", a["uow.sqlstate"])
			assert.Equal(t, "40001", a["error.type"])
			assert.Len(t, exceptions(rs), 1, "the failed attempt's error")
			assert.Equal(t, codes.Unset, rs.Status().Code, "the backoff itself did not fail")

			want := map[string]int64{
				"uow.retries{uow.sqlstate=40001}":            1,
				"uow.unit.duration{uow.outcome=committed}":   1,
				"uow.unit.duration{uow.outcome=rolled back}": 1,
				"uow.rollbacks{uow.outcome=rolled back}":     1,
				"uow.commit.duration{uow.source=default}":    1,
			}
			// The failed attempt's unit span says why, at a statement (the
			// error Do's callback passed on) as at COMMIT.
			first := units[0]
			assert.Equal(t, "40001", attrs(first)["uow.sqlstate"].AsString())
			assert.Equal(t, "40001", attrs(first)["error.type"].AsString())
			if tc.name == "at COMMIT" {
				assert.Equal(t, "rolled back", attrs(first)["uow.outcome"].AsString(), "nothing committed")
				commit := o.named("uow.commit")[0]
				assert.Equal(t, "40001", attrs(commit)["uow.sqlstate"].AsString())
				want["uow.commit.duration{error.type=40001,uow.source=default}"] = 1
			}
			assert.Equal(t, want, o.points(t))
		})
	}
}

// writeSkew prepares a serializable transaction that reads tbl, and returns
// a step that makes the unit read it too, then lets the other insert and
// commit first: PostgreSQL then refuses the unit's COMMIT with 40001.
func writeSkew(t *testing.T, db *sqlx.DB, tbl string) func(ctx context.Context) error {
	other, err := db.BeginTxx(context.Background(), &sql.TxOptions{Isolation: sql.LevelSerializable})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Rollback() })
	var n int
	require.NoError(t, other.Get(&n, `SELECT count(*) FROM `+tbl))
	return func(ctx context.Context) error {
		if err := repo.From(ctx, db).GetContext(ctx, &n, `SELECT count(*) FROM `+tbl); err != nil {
			return err
		}
		if _, err := other.Exec(`INSERT INTO ` + tbl + ` (v) VALUES ('theirs')`); err != nil {
			return err
		}
		return other.Commit()
	}
}

// Source "audit" fails at COMMIT with a real 40001 after "default"
// committed: a partial commit, never retried.
func TestPartialCommit(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	a, b := pgtest.Open(t, "uowotel"), pgtest.Open(t, "uowotel_audit")
	ta, tb := newTable(t, a), newTable(t, b)
	m := uow.New(a, uow.WithSource("audit", b), uow.WithObserver(o.obs))
	skew := writeSkew(t, b, tb)

	ctx, req := o.parent("request")
	err := m.Do(ctx, func(ctx context.Context) error {
		if err := insert(ctx, a, ta, "kept"); err != nil {
			return err
		}
		if err := insert(ctx, b, tb, "mine"); err != nil {
			return err
		}
		return skew(ctx)
	}, uow.Isolation(sql.LevelSerializable), uow.Retry(fast))
	require.ErrorIs(t, err, uow.ErrPartialCommit)
	req.End()

	assert.Equal(t, `request
  uow.unit ERROR
    uow.begin default
    uow.begin audit
    uow.commit default
    uow.commit audit ERROR
`, o.outline())
	unit := o.one(t, "uow.unit")
	ua := attrsOf(unit)
	assert.Equal(t, "partial", ua["uow.outcome"])
	assert.Equal(t, []string{"default", "audit"}, ua["uow.sources"])
	assert.Equal(t, "40001", ua["uow.sqlstate"])
	assert.Equal(t, int64(1), ua["uow.attempt"])
	assert.Equal(t, err.Error(), unit.Status().Description)
	assert.Empty(t, o.named("uow.retry"), "a partial commit is never retried")
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=partial}":                 1,
		"uow.commits.partial":                                    1,
		"uow.commit.duration{uow.source=default}":                1,
		"uow.commit.duration{error.type=40001,uow.source=audit}": 1,
	}, o.points(t))
}

// A nested unit rolled back to its savepoint: the outer unit commits, and
// its span has one span per savepoint statement.
func TestNestedSavepointRolledBack(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	db := pgtest.Open(t, "uowotel")
	tbl := newTable(t, db)
	m := uow.New(db, uow.WithObserver(o.obs))
	errNested := errors.New("nested failed")

	ctx, req := o.parent("request")
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		if err := insert(ctx, db, tbl, "outer"); err != nil {
			return err
		}
		err := m.Do(ctx, func(ctx context.Context) error {
			if err := insert(ctx, db, tbl, "inner"); err != nil {
				return err
			}
			return errNested
		}, uow.Propagate(uow.Nested))
		require.ErrorIs(t, err, errNested)
		return m.Do(ctx, func(ctx context.Context) error { return insert(ctx, db, tbl, "joined") })
	}))
	req.End()

	assert.Equal(t, `request
  uow.unit
    uow.begin default
    uow.savepoint default SAVEPOINT
    uow.savepoint default ROLLBACK TO SAVEPOINT
    uow.savepoint default RELEASE SAVEPOINT
    uow.commit default
`, o.outline())
	unit := o.one(t, "uow.unit")
	assert.Equal(t, []string{"nested", "join"}, attrsOf(unit)["uow.scopes"])
	assert.Equal(t, "committed", attrsOf(unit)["uow.outcome"])
	for _, s := range o.named("uow.savepoint") {
		assert.Equal(t, codes.Unset, s.Status().Code)
	}
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM `+tbl))
	assert.Equal(t, 2, n, "the nested unit's row was rolled back")
}

// A COMMIT the server applied but whose answer never came: the outcome is
// unknown.
func TestUnknownCommit(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	direct := pgtest.Open(t, "uowotel")
	tbl := newTable(t, direct)
	proxy := faultproxy.Start(t, "127.0.0.1:5432")
	u, err := url.Parse(pgtest.URL(t, "uowotel"))
	require.NoError(t, err)
	u.Host = proxy.Addr()
	db, err := sqlx.Open("postgres", u.String())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	m := uow.New(db, uow.WithObserver(o.obs))

	ctx, req := o.parent("request")
	err = m.Do(ctx, func(ctx context.Context) error {
		if err := insert(ctx, db, tbl, "maybe"); err != nil {
			return err
		}
		proxy.DropCommitReply(true)
		return nil
	})
	require.ErrorIs(t, err, uow.ErrCommitUnknown)
	req.End()

	assert.Equal(t, `request
  uow.unit ERROR
    uow.begin default
    uow.commit default ERROR
`, o.outline())
	ua := attrsOf(o.one(t, "uow.unit"))
	assert.Equal(t, "unknown", ua["uow.outcome"])
	assert.Equal(t, "uow.ErrCommitUnknown", ua["error.type"])
	p := o.points(t)
	assert.Equal(t, int64(1), p["uow.commits.unknown"])
	assert.Equal(t, int64(1), p["uow.unit.duration{uow.outcome=unknown}"])
}

// A unit that touches no database makes no span and no measurement.
func TestUnusedUnitIsNotReported(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	db := pgtest.Open(t, "uowotel")
	m := uow.New(db, uow.WithObserver(o.obs))
	require.NoError(t, m.Do(context.Background(), func(context.Context) error { return nil }))
	require.Error(t, m.Do(context.Background(), func(context.Context) error { return errors.New("no") }))
	assert.Empty(t, o.spans.Ended())
	assert.Empty(t, o.points(t))
}

// A failed hook is counted; it ends no span (it is a fact, reported after
// the unit's span ended) and leaves the unit's outcome alone.
func TestHookErrorIsCounted(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	db := pgtest.Open(t, "uowotel")
	tbl := newTable(t, db)
	m := uow.New(db, uow.WithObserver(o.obs))

	ctx, req := o.parent("request")
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		if err := insert(ctx, db, tbl, "a"); err != nil {
			return err
		}
		return uow.AfterCommit(ctx, func(context.Context) error { return errors.New("publish failed") })
	}))
	assert.Len(t, o.spans.Ended(), 3, "unit, begin, commit; the request's span is still open")
	req.End()

	assert.Equal(t, `request
  uow.unit
    uow.begin default
    uow.commit default
`, o.outline())
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=committed}": 1,
		"uow.commit.duration{uow.source=default}":  1,
		"uow.hook.errors":                          1,
	}, o.points(t))
}

// A unit whose context ended is rolled back for that reason: a failure.
func TestCanceledUnit(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	db := pgtest.Open(t, "uowotel")
	tbl := newTable(t, db)
	m := uow.New(db, uow.WithObserver(o.obs))

	pctx, req := o.parent("request")
	ctx, cancel := context.WithCancel(pctx)
	err := m.Do(ctx, func(ctx context.Context) error {
		if err := insert(ctx, db, tbl, "a"); err != nil {
			return err
		}
		cancel() // the client went away
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	req.End()

	assert.Equal(t, `request
  uow.unit ERROR
    uow.begin default
    uow.rollback default
`, o.outline())
	a := attrsOf(o.one(t, "uow.unit"))
	assert.Equal(t, "rolled back", a["uow.outcome"])
	assert.Equal(t, "context.Canceled", a["error.type"])
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=rolled back}": 1,
		"uow.rollbacks{uow.outcome=rolled back}":     1,
	}, o.points(t))
}
