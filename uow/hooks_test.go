package uow_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/bridge"
	"github.com/uowkit/uowkit/uow"
)

type ctxKey struct{}

// Under the HTTP middleware the unit's context carries a hook queue: hooks
// are queued at Commit and Rollback, in order, and run when the middleware
// runs the queue, on the context it chooses.
func TestHooksGoToTheQueueWhenThereIsOne(t *testing.T) {
	m := uow.New(nopDB(t))
	ctx, q := bridge.WithHookQueue(context.Background())
	var ran []string
	hook := func(name string) uow.Hook {
		return func(ctx context.Context) error {
			ran = append(ran, name+":"+ctx.Value(ctxKey{}).(string))
			return nil
		}
	}
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		require.NoError(t, uow.AfterCommit(ctx, hook("commit")))
		return uow.AfterRollback(ctx, hook("never"))
	}))
	_ = m.Do(ctx, func(ctx context.Context) error {
		require.NoError(t, uow.AfterRollback(ctx, hook("rollback")))
		return context.Canceled
	})
	assert.Empty(t, ran, "nothing ran at Commit or Rollback")
	assert.Equal(t, 2, q.Len())
	q.Run(context.WithValue(context.Background(), ctxKey{}, "later"))
	assert.Equal(t, []string{"commit:later", "rollback:later"}, ran)

	// Without a queue, hooks run at the end of Commit.
	ran = nil
	require.NoError(t, m.Do(context.WithValue(context.Background(), ctxKey{}, "now"), func(ctx context.Context) error {
		return uow.AfterCommit(ctx, hook("commit"))
	}))
	assert.Equal(t, []string{"commit:now"}, ran)
}
