package uow_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

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
