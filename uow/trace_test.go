package uow_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/nopdriver"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

type spanKey struct{}

// tracer is an Observer that works like a tracing one: Start opens a "span"
// (a name on the context, nested in the one there) and End closes it.
type tracer struct {
	mu    sync.Mutex
	lines []string
}

func (tr *tracer) Start(ctx context.Context, e uow.Event) context.Context {
	parent, _ := ctx.Value(spanKey{}).(string)
	name := e.Kind.String()
	if e.Source != "" {
		name += "(" + e.Source + ")"
	}
	if e.Statement != "" {
		name += "(" + e.Statement + ")"
	}
	return context.WithValue(ctx, spanKey{}, strings.TrimPrefix(parent+"/"+name, "/"))
}

func (tr *tracer) End(ctx context.Context, e uow.Event) {
	span, _ := ctx.Value(spanKey{}).(string)
	line := "end " + span
	if e.Kind == uow.EventUnit {
		line += fmt.Sprintf(" outcome=%v sources=%v scopes=%v", e.Outcome, e.Sources, e.Scopes)
	}
	tr.mu.Lock()
	tr.lines = append(tr.lines, line)
	tr.mu.Unlock()
}

// spying records the span each statement reaches the driver with.
type spying struct {
	nopdriver.Connector
	mu   sync.Mutex
	seen []string
}

func (s *spying) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := s.Connector.Connect(ctx)
	return spyConn{c.(spyable), s}, err
}

type spyable interface {
	driver.Conn
	driver.ExecerContext
	driver.ConnBeginTx
}

type spyConn struct {
	spyable
	s *spying
}

func (c spyConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	span, _ := ctx.Value(spanKey{}).(string)
	c.s.mu.Lock()
	c.s.seen = append(c.s.seen, q+" @ "+span)
	c.s.mu.Unlock()
	return c.spyable.ExecContext(ctx, q, args)
}

// The Observer hears about an operation before it happens and gets to
// choose the context it runs on: the unit is one span, its BEGIN, COMMIT
// and savepoint statements are spans inside it, and the driver sees the
// application's statements under the unit's span (where a database/sql
// tracer such as otelsql nests its own spans).
func TestObserverWrapsTheUnitAndItsStatements(t *testing.T) {
	spy := &spying{}
	db := sqlx.NewDb(sql.OpenDB(spy), "postgres")
	defer db.Close()
	tr := &tracer{}
	m := uow.New(db, uow.WithObserver(tr))
	ctx := context.WithValue(context.Background(), spanKey{}, "request")

	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT 1`); err != nil {
			return err
		}
		_ = m.Do(ctx, func(ctx context.Context) error {
			if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT 2`); err != nil {
				return err
			}
			return context.Canceled // rolls back to the savepoint
		}, uow.Propagate(uow.Nested))
		return nil
	}))
	assert.Equal(t, []string{
		"end request/unit/begin(default)",
		"end request/unit/savepoint(default)(SAVEPOINT)",
		"end request/unit/savepoint(default)(ROLLBACK TO SAVEPOINT)",
		"end request/unit/savepoint(default)(RELEASE SAVEPOINT)",
		"end request/unit/commit(default)",
		"end request/unit outcome=committed sources=[default] scopes=[nested]",
	}, tr.lines)
	assert.Contains(t, spy.seen, "INSERT 1 @ request/unit", "the driver saw the statement under the unit's span")
	assert.Contains(t, spy.seen, "INSERT 2 @ request/unit", "a nested unit's statements too")

	// A unit that touches nothing is not reported.
	tr.lines = nil
	require.NoError(t, m.Do(ctx, func(context.Context) error { return nil }))
	assert.Empty(t, tr.lines)
}

// Observers chains observers: Start in order, each seeing the context the
// one before returned; End in reverse, with the last context.
func TestObserversChain(t *testing.T) {
	spy := &spying{}
	db := sqlx.NewDb(sql.OpenDB(spy), "postgres")
	defer db.Close()
	tr := &tracer{}
	var logged []string
	logger := uow.ObserverFunc(func(ctx context.Context, e uow.Event) {
		span, _ := ctx.Value(spanKey{}).(string)
		logged = append(logged, e.Kind.String()+" @ "+span)
	})
	m := uow.New(db, uow.WithObserver(uow.Observers(tr, nil, logger)))
	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		_, err := repo.From(ctx, db).ExecContext(ctx, `INSERT 1`)
		return err
	}))
	assert.Equal(t, []string{"begin @ unit/begin(default)", "commit @ unit/commit(default)", "unit @ unit"}, logged,
		"the logger sees the tracer's spans")
	assert.Len(t, tr.lines, 3)
}
