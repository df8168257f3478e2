package uowotel_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

// An inbox given the observer: each message handled is counted, applied
// or a duplicate, and makes no span; its unit is a span as any other.
func TestInboxMessages(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	db := pgtest.Open(t, "uowotel")
	tbl := newTable(t, db)
	name := fmt.Sprintf("inbox_%d", os.Getpid())
	schema, err := outbox.InboxSchema(outbox.Postgres, name)
	require.NoError(t, err)
	_, err = db.Exec(schema)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Exec(`DROP TABLE IF EXISTS ` + name) })
	in, err := outbox.NewInbox(db, outbox.Postgres, outbox.InboxConfig{Table: name, Observer: o.obs})
	require.NoError(t, err)
	m := uow.New(db, uow.WithObserver(o.obs))

	ctx, req := o.parent("consumer")
	for _, want := range []bool{true, false} {
		applied, err := in.Handle(ctx, m, "message-1", func(ctx context.Context) error { return insert(ctx, db, tbl, "applied") })
		require.NoError(t, err)
		assert.Equal(t, want, applied)
	}
	req.End()

	assert.Equal(t, `consumer
  uow.unit
    uow.begin default
    uow.commit default
  uow.unit
    uow.begin default
    uow.commit default
`, o.outline())
	assert.Equal(t, map[string]int64{
		"uow.unit.duration{uow.outcome=committed}":                      2,
		"uow.commit.duration{uow.source=default}":                       2,
		"uow.inbox.messages{uow.applied=true,uow.source=" + name + "}":  1,
		"uow.inbox.messages{uow.applied=false,uow.source=" + name + "}": 1,
	}, o.points(t))
}
