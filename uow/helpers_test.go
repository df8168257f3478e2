package uow_test

import (
	"context"
	"os"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// newTable creates a table of its own for one test: items(id, v).
func newTable(t *testing.T, db *sqlx.DB) string {
	t.Helper()
	return pgtest.Table(t, db, "items", `id serial PRIMARY KEY, v text UNIQUE`)
}

func count(t *testing.T, db *sqlx.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM `+table))
	return n
}

// insert adds a row to table through the unit active in ctx, if any.
func insert(ctx context.Context, db *sqlx.DB, table, v string) error {
	_, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO `+table+` (v) VALUES ($1)`, v)
	return err
}

// events collects observer events.
type events struct {
	ch chan uow.Event
}

func newEvents() *events { return &events{ch: make(chan uow.Event, 1024)} }

func (e *events) Start(ctx context.Context, _ uow.Event) context.Context { return ctx }

func (e *events) End(_ context.Context, ev uow.Event) { e.ch <- ev }

func (e *events) drain() []uow.Event {
	var out []uow.Event
	for {
		select {
		case ev := <-e.ch:
			out = append(out, ev)
		default:
			return out
		}
	}
}
