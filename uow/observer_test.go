package uow_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

func TestSlogObserverLogsTheUnitsLife(t *testing.T) {
	db := pgtest.Open(t, "uow")
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := uow.New(db, uow.WithObserver(uow.NewSlogObserver(l)))

	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
		return err
	}))
	out := buf.String()
	assert.Contains(t, out, `msg="uow begin" event=begin source=default`)
	assert.Contains(t, out, `msg="uow commit" event=commit source=default`)

	buf.Reset()
	_ = m.Do(context.Background(), func(ctx context.Context) error {
		_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT * FROM no_such_table`)
		return err
	})
	assert.Contains(t, buf.String(), `msg="uow rollback" event=rollback source=default`)
}

// TestObserverMayUseTheUnit: the Observer runs after the unit's lock is
// released, so one that looks at the unit (here: its state, on every event,
// from the goroutine that caused it and from the cancellation watcher) does
// not deadlock it.
func TestObserverMayUseTheUnit(t *testing.T) {
	db := pgtest.Open(t, "uow")
	seen := make(chan uow.EventKind, 100)
	var current atomic.Pointer[uow.Unit]
	m := uow.New(db, uow.WithObserver(uow.ObserverFunc(func(ctx context.Context, e uow.Event) {
		u := current.Load()
		_ = u.RollbackOnly() // takes the unit's lock
		_ = u.AfterCommit(func(context.Context) error { return nil })
		if e.Kind != uow.EventUnit {
			seen <- e.Kind
		}
	})))
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
			current.Store(uow.FromContext(ctx))
			_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
			return err
		}))
		parent, cancel := context.WithCancel(context.Background())
		ctx, u := m.Begin(parent)
		current.Store(u)
		_, err := repo.From(ctx, db).ExecContext(ctx, `SELECT 1`)
		assert.NoError(t, err)
		cancel() // the watcher rolls back and reports it
		assert.ErrorIs(t, u.Commit(), context.Canceled)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("deadlock: the Observer was called with the unit's lock held")
	}
	// The watcher's rollback may still be reporting when Commit returns.
	var kinds []uow.EventKind
	for range 4 {
		kinds = append(kinds, <-seen)
	}
	assert.Equal(t, []uow.EventKind{uow.EventBegin, uow.EventCommit, uow.EventBegin, uow.EventRollback}, kinds)
}
