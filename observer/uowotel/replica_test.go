package uowotel_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
)

// read runs a read-only unit that reads db.
func read(ctx context.Context, m *uow.Manager, db *sqlx.DB) error {
	return m.Do(ctx, func(ctx context.Context) error {
		var n int
		return uow.FromContext(ctx).On(db).GetContext(ctx, &n, `SELECT 1`)
	}, uow.ReadOnly())
}

// A read-only unit's BEGIN on a replica says which (uow.replica). Without a
// Consistency nothing checks that the replica is one, so a second pool on
// the primary's database stands in for it.
func TestReplicaBegin(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	primary, replica := pgtest.Open(t, "uowotel"), pgtest.Open(t, "uowotel")
	m := uow.New(primary, uow.WithObserver(o.obs), uow.WithReplicas(primary, uow.Replicas{DBs: []*sqlx.DB{replica}}))

	ctx, req := o.parent("request")
	require.NoError(t, read(ctx, m, primary))
	req.End()

	assert.Equal(t, `request
  uow.unit
    uow.begin default on default.replica1
    uow.commit default
`, o.outline())
	assert.Equal(t, map[string]any{"uow.source": "default", "db.operation.name": "BEGIN", "uow.replica": "default.replica1"},
		attrsOf(o.one(t, "uow.begin")))
	assert.Empty(t, spanEvents(o.one(t, "uow.unit")))
}

// A replica that cannot be reached: the failed BEGIN on it, then the
// fallback to the primary, an event of the unit's span (no span of its
// own) and a count; the next unit skips the replica (Cooldown) and falls
// back at once.
func TestReplicaFallback(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	primary := pgtest.Open(t, "uowotel")
	u, err := url.Parse(pgtest.URL(t, "uowotel"))
	require.NoError(t, err)
	u.Host = "127.0.0.1:1" // nothing listens there
	down, err := sqlx.Open("postgres", u.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = down.Close() })
	m := uow.New(primary, uow.WithObserver(o.obs),
		uow.WithReplicas(primary, uow.Replicas{DBs: []*sqlx.DB{down}, Cooldown: time.Hour}))

	ctx, req := o.parent("request")
	require.NoError(t, read(ctx, m, primary))
	require.NoError(t, read(ctx, m, primary))
	req.End()

	assert.Equal(t, `request
  uow.unit
    uow.begin default on default.replica1 ERROR
    uow.begin default
    uow.commit default
  uow.unit
    uow.begin default
    uow.commit default
`, o.outline())
	for _, unit := range o.named("uow.unit") {
		assert.Equal(t, []string{"uow.replica_fallback{error.type=uow.ErrNoReplica,uow.source=default}"}, spanEvents(unit))
		assert.Equal(t, codes.Unset, unit.Status().Code, "the unit ran, on the primary")
	}
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=committed}":                              2,
		"uow.commit.duration{uow.source=default}":                               2,
		"uow.replica.fallbacks{error.type=uow.ErrNoReplica,uow.source=default}": 2,
	}, o.points(t))
}
