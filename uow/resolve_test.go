package uow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// resolveBound is the bound the tests give ResolveOutcomes: long enough for
// the server to notice a closed session on a loaded CI machine.
const resolveBound = 10 * time.Second

// A COMMIT that reached the server, whose answer was lost, is resolved as
// committed: Do succeeds, once, and the AfterCommit hooks run.
func TestResolvedCommitReplyLostIsCommitted(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			direct := pgtest.Open(t, "uow")
			tbl := newTable(t, direct)
			db, proxy := proxied(t, drv)
			m := uow.New(db, uow.ResolveOutcomes(resolveBound))
			calls := 0
			var hooks []string
			err := m.Do(context.Background(), func(ctx context.Context) error {
				calls++
				if err := insert(ctx, db, tbl, fmt.Sprint("kept", calls)); err != nil {
					return err
				}
				_ = uow.AfterCommit(ctx, func(context.Context) error { hooks = append(hooks, "commit"); return nil })
				_ = uow.AfterRollback(ctx, func(context.Context) error { hooks = append(hooks, "rollback"); return nil })
				proxy.DropCommitReply(true) // the server commits; the client never hears it
				return nil
			}, uow.Retry(everything()))
			require.NoError(t, err)
			assert.EqualValues(t, 1, proxy.DroppedCommits(), "the COMMIT's answer was dropped")
			assert.Equal(t, 1, calls)
			assert.Equal(t, []string{"commit"}, hooks)
			assert.Equal(t, 1, count(t, direct, tbl), "the row is committed, once")
		})
	}
}

// A COMMIT that never reached the server is resolved as rolled back: a
// definite failure, not ErrCommitUnknown, which a retry policy may retry.
func TestResolvedCommitNeverSentIsRolledBack(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			direct := pgtest.Open(t, "uow")
			tbl := newTable(t, direct)
			db, proxy := proxied(t, drv)
			m := uow.New(db, uow.ResolveOutcomes(resolveBound))
			var hooks []string
			err := m.Do(context.Background(), func(ctx context.Context) error {
				if err := insert(ctx, db, tbl, "lost"); err != nil {
					return err
				}
				_ = uow.AfterCommit(ctx, func(context.Context) error { hooks = append(hooks, "commit"); return nil })
				_ = uow.AfterRollback(ctx, func(context.Context) error { hooks = append(hooks, "rollback"); return nil })
				proxy.DropCommit(true) // the COMMIT never reaches the server
				return nil
			})
			proxy.DropCommit(false)
			require.Error(t, err)
			assert.EqualValues(t, 1, proxy.LostCommits())
			assert.NotErrorIs(t, err, uow.ErrCommitUnknown, "resolved: %v", err)
			assert.NotErrorIs(t, err, uow.ErrPartialCommit)
			var ce *uow.CommitError
			require.ErrorAs(t, err, &ce)
			assert.False(t, ce.Unknown)
			assert.Equal(t, uow.DefaultSource, ce.Failed)
			assert.False(t, ce.RetryUnsafe())
			assert.Equal(t, []string{"rollback"}, hooks, "a known rollback runs the AfterRollback hooks")
			assert.Zero(t, count(t, direct, tbl), "nothing committed")
		})
	}
}

// A resolved rollback is retried by a policy that retries its cause.
func TestResolvedRollbackIsRetried(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			direct := pgtest.Open(t, "uow")
			tbl := newTable(t, direct)
			db, proxy := proxied(t, drv)
			m := uow.New(db, uow.ResolveOutcomes(resolveBound))
			calls := 0
			err := m.Do(context.Background(), func(ctx context.Context) error {
				calls++
				if err := insert(ctx, db, tbl, fmt.Sprint("try", calls)); err != nil {
					return err
				}
				proxy.DropCommit(calls == 1)
				return nil
			}, uow.Retry(everything()))
			require.NoError(t, err)
			assert.Equal(t, 2, calls, "the rolled-back attempt is retried")
			assert.Equal(t, 1, count(t, direct, tbl), "only the second attempt's row")
			var n int
			require.NoError(t, direct.Get(&n, `SELECT count(*) FROM `+tbl+` WHERE v = 'try2'`))
			assert.Equal(t, 1, n)
		})
	}
}

// A transaction that never wrote has no id: its lost COMMIT is harmless,
// and the unit reports success.
func TestResolvedReadOnlyCommitIsHarmless(t *testing.T) {
	for _, drv := range []string{"postgres", "pgx"} {
		t.Run(drv, func(t *testing.T) {
			direct := pgtest.Open(t, "uow")
			tbl := newTable(t, direct)
			db, proxy := proxied(t, drv)
			m := uow.New(db, uow.ResolveOutcomes(resolveBound))
			var hooks []string
			err := m.Do(context.Background(), func(ctx context.Context) error {
				var n int
				if err := repo.From(ctx, db).GetContext(ctx, &n, `SELECT count(*) FROM `+tbl); err != nil {
					return err
				}
				_ = uow.AfterCommit(ctx, func(context.Context) error { hooks = append(hooks, "commit"); return nil })
				proxy.DropCommitReply(true)
				return nil
			})
			require.NoError(t, err)
			assert.EqualValues(t, 1, proxy.DroppedCommits(), "the COMMIT's answer was dropped")
			assert.Equal(t, []string{"commit"}, hooks)
		})
	}
}

// When the server cannot be asked within the bound, the outcome stays
// unknown, and the bound is honoured.
func TestUnresolvableOutcomeStaysUnknown(t *testing.T) {
	direct := pgtest.Open(t, "uow")
	tbl := newTable(t, direct)
	db, proxy := proxied(t, "postgres")
	db.SetMaxIdleConns(0) // the status query needs a new connection
	const bound = 300 * time.Millisecond
	m := uow.New(db, uow.ResolveOutcomes(bound))
	var start time.Time
	err := m.Do(context.Background(), func(ctx context.Context) error {
		if err := insert(ctx, db, tbl, "x"); err != nil {
			return err
		}
		proxy.RejectNext(1 << 20) // no new connection gets through
		proxy.DropCommit(true)
		start = time.Now()
		return nil
	})
	elapsed := time.Since(start)
	require.ErrorIs(t, err, uow.ErrCommitUnknown)
	assert.GreaterOrEqual(t, elapsed, bound)
	assert.Less(t, elapsed, bound+5*time.Second)
	assert.Zero(t, count(t, direct, tbl))
}

// The multi-source CommitError reports the resolved outcome: the first
// source committed, the second's lost COMMIT is a known rollback, so the
// commit is partial, and not unknown.
func TestResolvedOutcomeInCommitError(t *testing.T) {
	audit := pgtest.Open(t, "uow_audit")
	ta := newTable(t, audit)
	direct := pgtest.Open(t, "uow")
	tbl := newTable(t, direct)
	db, proxy := proxied(t, "pgx")
	m := uow.New(audit, uow.WithSource("proxied", db), uow.ResolveOutcomes(resolveBound))
	err := m.Do(context.Background(), func(ctx context.Context) error {
		if err := insert(ctx, audit, ta, "a"); err != nil {
			return err
		}
		if err := insert(ctx, db, tbl, "b"); err != nil {
			return err
		}
		proxy.DropCommit(true)
		return nil
	})
	var ce *uow.CommitError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, []string{uow.DefaultSource}, ce.Committed)
	assert.Equal(t, "proxied", ce.Failed)
	assert.False(t, ce.Unknown)
	assert.ErrorIs(t, err, uow.ErrPartialCommit)
	assert.NotErrorIs(t, err, uow.ErrCommitUnknown)
	assert.Equal(t, 1, count(t, audit, ta))
	assert.Zero(t, count(t, direct, tbl))

	// And a lost answer on the last source resolves to a full commit.
	proxy.DropCommit(false)
	err = m.Do(context.Background(), func(ctx context.Context) error {
		if err := insert(ctx, audit, ta, "c"); err != nil {
			return err
		}
		if err := insert(ctx, db, tbl, "d"); err != nil {
			return err
		}
		proxy.DropCommitReply(true)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, count(t, audit, ta))
	assert.Equal(t, 1, count(t, direct, tbl))
}

func TestResolveOutcomesPanicsOnABadBound(t *testing.T) {
	assert.PanicsWithValue(t, "uow: ResolveOutcomes(0s): the bound must be positive", func() {
		uow.New(nil, uow.ResolveOutcomes(0))
	})
	assert.Panics(t, func() { uow.New(nil, uow.ResolveOutcomes(-time.Second)) })
}
