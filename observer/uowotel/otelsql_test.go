package uowotel_test

import (
	"context"
	"strings"
	"testing"

	"github.com/XSAM/otelsql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// The application's statements reach the driver on a context that carries
// the unit's span, so otelsql (here wrapping lib/pq) nests its spans under
// it: one trace per unit, where otelsql alone gives sibling spans with no
// transaction to hold them.
func TestOtelsqlSpansNestUnderTheUnit(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	tbl := newTable(t, pgtest.Open(t, "uowotel"))
	sqldb, err := otelsql.Open("postgres", pgtest.URL(t, "uowotel"), otelsql.WithTracerProvider(o.tp),
		otelsql.WithSpanOptions(otelsql.SpanOptions{OmitConnResetSession: true, OmitConnectorConnect: true, OmitRows: true}))
	require.NoError(t, err)
	db := sqlx.NewDb(sqldb, "postgres")
	t.Cleanup(func() { db.Close() })
	m := uow.New(db, uow.WithObserver(o.obs))

	ctx, req := o.parent("request")
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		if err := insert(ctx, db, tbl, "outer"); err != nil {
			return err
		}
		return m.Do(ctx, func(ctx context.Context) error {
			var n int
			return repo.From(ctx, db).GetContext(ctx, &n, `SELECT count(*) FROM `+tbl)
		}, uow.Propagate(uow.Nested))
	}))
	req.End()

	// The statements are children of the unit's span, and so are the
	// driver's spans for BEGIN, COMMIT and the savepoint statements: they
	// run on the unit's context, not on the one the Observer's Start
	// returned for uowkit's own span of the operation (database/sql's
	// Commit takes no context at all: it uses BeginTx's).
	assert.Equal(t, `request
  uow.unit
    uow.begin default
    sql.conn.begin_tx
    sql.conn.exec
    uow.savepoint default SAVEPOINT
    sql.conn.exec
    sql.conn.query
    uow.savepoint default RELEASE SAVEPOINT
    sql.conn.exec
    uow.commit default
    sql.tx.commit
`, o.outline())
	unit := o.one(t, "uow.unit")
	var driver int
	for _, s := range o.spans.Ended() {
		if strings.HasPrefix(s.Name(), "sql.") {
			driver++
			assert.Equal(t, unit.SpanContext().SpanID(), s.Parent().SpanID(), "%s is a child of the unit", s.Name())
		}
	}
	assert.Equal(t, 6, driver)
}
