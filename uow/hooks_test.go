package uow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/bridge"
	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
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

// A unit aborted because its context ended (the client left) queues its
// after-rollback hooks before a Rollback waiting for the abort returns: the
// middleware runs the queue right after that Rollback, and must find them.
func TestAbortQueuesHooksBeforeRollbackReturns(t *testing.T) {
	db := pgtest.Open(t, "uow")
	// An Observer slow to hear of the unit's end widens the window in which
	// a unit seen over too early had not queued its hooks yet.
	aborting := make(chan struct{}, 1)
	m := uow.New(db, uow.WithObserver(uow.ObserverFunc(func(_ context.Context, e uow.Event) {
		switch e.Kind {
		case uow.EventRollback:
			aborting <- struct{}{} // the watcher has rolled the source back
		case uow.EventUnit:
			time.Sleep(10 * time.Millisecond)
		}
	})))
	for i := range 10 {
		parent, cancel := context.WithCancel(context.Background())
		qctx, q := bridge.WithHookQueue(parent)
		ctx, u := m.Begin(qctx)
		_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
		require.NoError(t, err)
		require.NoError(t, u.AfterRollback(func(context.Context) error { return nil }))
		cancel() // the watcher aborts the unit, concurrently
		<-aborting
		_ = u.Rollback()
		require.Equal(t, 1, q.Len(), "run %d: the hook was queued before Rollback returned", i)
	}
}
