package uowtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uow/uowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type repos struct{ log *[]string }

// service is code under test: it depends on the Transactor interface only.
type service struct{ tx uow.Transactor[repos] }

func (s service) run(ctx context.Context, fail bool) error {
	return s.tx.Do(ctx, func(ctx context.Context, r repos) error {
		*r.log = append(*r.log, "work")
		if err := uow.AfterCommit(ctx, func(context.Context) error { *r.log = append(*r.log, "published"); return nil }); err != nil {
			return err
		}
		if err := uow.AfterRollback(ctx, func(context.Context) error { *r.log = append(*r.log, "compensated"); return nil }); err != nil {
			return err
		}
		if fail {
			return errors.New("rule broken")
		}
		return nil
	})
}

func TestFakeRecordsOutcomesAndRunsHooks(t *testing.T) {
	var log []string
	fake := uowtest.New(repos{log: &log})
	s := service{tx: fake}
	ctx := context.Background()

	require.NoError(t, s.run(ctx, false))
	assert.Equal(t, []string{"work", "published"}, log)

	log = nil
	require.Error(t, s.run(ctx, true))
	assert.Equal(t, []string{"work", "compensated"}, log)

	log = nil
	fake.FailNextCommit(nil)
	require.ErrorIs(t, s.run(ctx, false), uowtest.ErrCommit)
	assert.Equal(t, []string{"work", "compensated"}, log, "a failed commit runs rollback hooks, not commit hooks")

	assert.Equal(t, 1, fake.Commits())
	assert.Equal(t, 2, fake.Rollbacks())
	calls := fake.Calls()
	require.Len(t, calls, 3)
	assert.True(t, calls[0].Committed)
	assert.EqualError(t, calls[1].Err, "rule broken")
}

func TestFakeAmbiguousCommitRunsNoHook(t *testing.T) {
	for name, err := range map[string]error{
		"unknown": &uow.CommitError{Failed: "default", Unknown: true, Err: errors.New("conn closed")},
		"partial": fmt.Errorf("saving: %w", &uow.CommitError{Committed: []string{"default"}, Failed: "audit", Err: errors.New("40001")}),
	} {
		t.Run(name, func(t *testing.T) {
			var log []string
			fake := uowtest.New(repos{log: &log})
			fake.FailNextCommit(err)
			require.ErrorIs(t, service{tx: fake}.run(context.Background(), false), err)
			assert.Equal(t, []string{"work"}, log, "neither published nor compensated: the work may be durable")
			calls := fake.Calls()
			require.Len(t, calls, 1)
			assert.False(t, calls[0].Committed)
			assert.False(t, calls[0].RolledBack)
			assert.Same(t, err, calls[0].Err)
		})
	}
}

func TestFakeRollsBackOnPanicAndSetRollbackOnly(t *testing.T) {
	fake := uowtest.New(struct{}{})
	require.Panics(t, func() {
		_ = fake.Do(context.Background(), func(context.Context, struct{}) error { panic("x") })
	})
	err := fake.Do(context.Background(), func(ctx context.Context, _ struct{}) error {
		return uow.SetRollbackOnly(ctx)
	})
	require.ErrorIs(t, err, uow.ErrRollbackRequested)
	assert.Equal(t, 2, fake.Rollbacks())
	assert.Zero(t, fake.Commits())
}

func TestFakeHonoursPropagation(t *testing.T) {
	fake := uowtest.New(struct{}{})
	err := fake.Do(context.Background(), func(context.Context, struct{}) error { return nil }, uow.Propagate(uow.Mandatory))
	require.ErrorIs(t, err, uow.ErrNoUnit)
}
