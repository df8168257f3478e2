package uowotel_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/uow"
)

// twoPhase returns a manager whose Atomic units commit "default" and
// "audit" with two-phase commit, the decisions recorded in "default".
func twoPhase(t *testing.T, o *otelEnv, a, b *sqlx.DB) *uow.Manager {
	t.Helper()
	pgtest.RequirePrepared(t)
	table := pgtest.Table(t, a, "decisions", `gid text PRIMARY KEY, commit boolean NOT NULL, decided_at timestamptz NOT NULL DEFAULT now()`)
	return uow.New(a, uow.WithSource("audit", b), uow.WithObserver(o.obs),
		uow.TwoPhase(uow.TwoPhaseConfig{Prefix: fmt.Sprintf("uowotel_%d", os.Getpid()), Decisions: a, Table: table}))
}

// Each step of a two-phase commit is a span named by its statement;
// uow.commit.duration measures only COMMIT PREPARED, the step that makes a
// source's work visible, as it measures a plain COMMIT.
func TestTwoPhaseCommit(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	a, b := pgtest.Open(t, "uowotel"), pgtest.Open(t, "uowotel_audit")
	ta, tb := newTable(t, a), newTable(t, b)
	m := twoPhase(t, o, a, b)

	ctx, req := o.parent("request")
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		if err := insert(ctx, a, ta, "a"); err != nil {
			return err
		}
		return insert(ctx, b, tb, "b")
	}, uow.Atomic()))
	req.End()

	assert.Equal(t, `request
  uow.unit
    uow.begin default
    uow.begin audit
    uow.commit default PREPARE TRANSACTION
    uow.commit audit PREPARE TRANSACTION
    uow.commit default decision
    uow.commit default COMMIT PREPARED
    uow.commit audit COMMIT PREPARED
`, o.outline())
	for _, s := range o.named("uow.commit") {
		assert.Equal(t, codes.Unset, s.Status().Code)
	}
	assert.Equal(t, "committed", attrsOf(o.one(t, "uow.unit"))["uow.outcome"])
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=committed}": 1,
		"uow.commit.duration{uow.source=default}":  1,
		"uow.commit.duration{uow.source=audit}":    1,
	}, o.points(t))
}

// A PREPARE that fails (a deferred foreign key checked there) is not a
// COMMIT: it is not measured; the prepared sources are rolled back with
// ROLLBACK PREPARED, each a span of that name.
func TestTwoPhasePrepareFails(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	a, b := pgtest.Open(t, "uowotel"), pgtest.Open(t, "uowotel_audit")
	ta, child := newTable(t, a), pgtest.DeferredFK(t, b)
	m := twoPhase(t, o, a, b)

	ctx, req := o.parent("request")
	err := m.Do(ctx, func(ctx context.Context) error {
		if err := insert(ctx, a, ta, "a"); err != nil {
			return err
		}
		_, err := uow.FromContext(ctx).On(b).ExecContext(ctx, `INSERT INTO `+child+` (p) VALUES (1)`)
		return err
	}, uow.Atomic())
	require.Error(t, err)
	req.End()

	assert.Equal(t, `request
  uow.unit ERROR
    uow.begin default
    uow.begin audit
    uow.commit default PREPARE TRANSACTION
    uow.commit audit PREPARE TRANSACTION ERROR
    uow.rollback default ROLLBACK PREPARED
    uow.rollback audit ROLLBACK PREPARED
`, o.outline())
	prepare := o.named("uow.commit")[1]
	assert.Equal(t, "23503", attrsOf(prepare)["error.type"], "foreign_key_violation")
	assert.Equal(t, "rolled back", attrsOf(o.one(t, "uow.unit"))["uow.outcome"])
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=rolled back}": 1,
		"uow.rollbacks{uow.outcome=rolled back}":     1,
	}, o.points(t))
}
