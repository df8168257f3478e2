package outbox_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

// Outside a unit Record refuses to write: in autocommit a message would be
// published even if the caller's other work failed.
func TestRecordOutsideUnit(t *testing.T) {
	e := newEnv(t)
	err := e.ob.Record(context.Background(), outbox.Message{Subject: "s"})
	require.ErrorIs(t, err, uow.ErrNoUnit)
	assert.Equal(t, 0, e.count(t, "true"))
}

// Invalid input is refused with a MessageError before anything is written,
// even the valid messages given before the bad one.
func TestRecordValidation(t *testing.T) {
	e := newEnv(t)
	ok := outbox.Message{ID: "ok", Subject: "s"}
	tests := []struct {
		name  string
		msgs  []outbox.Message
		index int
		want  string
	}{
		{"empty subject", []outbox.Message{ok, {}}, 1, "empty subject"},
		{"duplicate id", []outbox.Message{ok, {ID: "ok", Subject: "s"}}, 1, "duplicate id"},
		{"long id", []outbox.Message{{ID: strings.Repeat("i", outbox.MaxIDLen+1), Subject: "s"}}, 0, "id is 256 bytes"},
		{"long subject", []outbox.Message{ok, {Subject: strings.Repeat("s", outbox.MaxSubjectLen+1)}}, 1, "subject is"},
		{"long key", []outbox.Message{{Subject: "s", Key: strings.Repeat("k", outbox.MaxKeyLen+1)}}, 0, "key is"},
		{"NUL in key", []outbox.Message{{Subject: "s", Key: "a\x00b"}}, 0, "NUL"},
		{"invalid UTF-8 subject", []outbox.Message{{Subject: "\xff"}}, 0, "UTF-8"},
		{"empty header name", []outbox.Message{ok, {Subject: "s", Headers: map[string]string{"": "v"}}}, 1, "empty header name"},
		{"long header name", []outbox.Message{{Subject: "s", Headers: map[string]string{strings.Repeat("h", outbox.MaxHeaderNameLen+1): "v"}}}, 0, "header name"},
		{"invalid header value", []outbox.Message{{Subject: "s", Headers: map[string]string{"h": "\xff"}}}, 0, "value is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.m.Do(context.Background(), func(ctx context.Context) error {
				err := e.ob.Record(ctx, tt.msgs...)
				require.ErrorIs(t, err, outbox.ErrInvalidMessage)
				var me *outbox.MessageError
				require.ErrorAs(t, err, &me)
				assert.Equal(t, tt.index, me.Index)
				assert.Contains(t, err.Error(), tt.want)
				assert.NoError(t, uow.FromContext(ctx).RollbackOnly(), "refused input does not doom the unit")
				return nil // commit: there must be nothing to commit
			})
			require.NoError(t, err)
			assert.Equal(t, 0, e.count(t, "true"))
		})
	}
}

// A unit that rolls back publishes nothing: its messages never become
// visible to the relay. The committed unit's message is published, with
// everything Record was given.
func TestRolledBackUnitPublishesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	boom := errors.New("boom")
	err := e.m.Do(ctx, func(ctx context.Context) error {
		if err := e.ob.Record(ctx, outbox.Message{ID: "rolled-back", Subject: "orders.created"}); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	kept := outbox.Message{ID: "kept", Subject: "orders.created", Key: "order-1",
		Payload: []byte(`{"id":1}`), Headers: map[string]string{"trace": "abc", "empty": ""}}
	e.record(t, kept)

	rec := &recorder{}
	n, err := e.relay(t, rec.publisher("r"), outbox.RelayConfig{}).Deliver(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	got := rec.all()
	require.Len(t, got, 1)
	m := got[0].m
	assert.Equal(t, kept.ID, m.ID)
	assert.Equal(t, kept.Subject, m.Subject)
	assert.Equal(t, kept.Key, m.Key)
	assert.Equal(t, kept.Payload, m.Payload)
	assert.Equal(t, kept.Headers, m.Headers)
	assert.False(t, m.RecordedAt.IsZero())
	assert.Equal(t, 0, e.count(t, "message_id = 'rolled-back'"))
	assert.Equal(t, 1, e.count(t, "delivered_at IS NOT NULL"))
}

// Record gives a message without an ID a fresh one; several messages in one
// call are written in order.
func TestRecordGeneratesIDs(t *testing.T) {
	e := newEnv(t)
	e.record(t, outbox.Message{Subject: "a"}, outbox.Message{Subject: "b"}, outbox.Message{Subject: "c", Key: "k"})
	rec := &recorder{}
	_, err := e.relay(t, rec.publisher("r"), outbox.RelayConfig{}).Deliver(context.Background())
	require.NoError(t, err)
	got := rec.all()
	require.Len(t, got, 3)
	for i, subject := range []string{"a", "b", "c"} {
		assert.Equal(t, subject, got[i].m.Subject)
		assert.Len(t, got[i].m.ID, 32)
	}
	assert.NotEqual(t, got[0].m.ID, got[1].m.ID)
}

// An id already in the outbox makes Record fail, and the unit cannot
// commit the rest of its work without it.
func TestRecordExistingIDDoomsUnit(t *testing.T) {
	e := newEnv(t)
	e.record(t, outbox.Message{ID: "x", Subject: "s"})
	err := e.m.Do(context.Background(), func(ctx context.Context) error {
		_ = e.ob.Record(ctx, outbox.Message{ID: "y", Subject: "s"}, outbox.Message{ID: "x", Subject: "s"}) // ignored
		return nil
	})
	require.ErrorIs(t, err, uow.ErrRollbackOnly)
	assert.Equal(t, 0, e.count(t, "message_id = 'y'"))
}

// The "sequence hole": a writer's id must be taken only once it holds its
// key's lock. T1 records key k and stays open; T2 records k and waits for
// T1's lock; meanwhile T3 records a message without a key and commits. T2's
// id must come after T3's: had T2 drawn its id before waiting, a relay could
// see a lower id of key k commit after a higher one.
func TestKeyedIDTakenAfterKeyLock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ctx1, u1 := e.m.Begin(ctx)
	defer u1.Rollback()
	require.NoError(t, e.ob.Record(ctx1, outbox.Message{ID: "t1", Subject: "s", Key: "k"}))

	t2 := make(chan error, 1)
	go func() {
		t2 <- e.m.Do(ctx, func(ctx context.Context) error {
			return e.ob.Record(ctx, outbox.Message{ID: "t2", Subject: "s", Key: "k"})
		})
	}()
	pgtest.WaitBlocked(t, e.db, e.table+"_keys", 1)
	e.record(t, outbox.Message{ID: "t3", Subject: "s"})
	require.NoError(t, u1.Commit())
	require.NoError(t, <-t2)

	var ids []string
	require.NoError(t, e.db.Select(&ids, `SELECT message_id FROM `+e.table+` ORDER BY id`))
	assert.Equal(t, []string{"t1", "t3", "t2"}, ids, "t2's id is drawn after t1 released key k")
	seqs := e.keySeqs(t)
	assert.Equal(t, int64(1), seqs["t1"].Seq)
	assert.Equal(t, int64(2), seqs["t2"].Seq)
	assert.Equal(t, int64(0), seqs["t3"].Seq)
}

// Per key, messages are published in commit order: many writers record on
// a few keys concurrently while a relay runs; for every key the relay
// publishes key_seq 1, 2, 3... (the order the key's lock was taken, that is
// commit order), with no gap, no repeat, nothing left out.
func TestPerKeyCommitOrder(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{}
	wake := make(chan struct{}, 1)
	stop := run(t, e.relay(t, rec.publisher("r"), outbox.RelayConfig{Batch: 7, Poll: 5 * time.Millisecond, Wake: wake}))
	const writers, each = 8, 25
	keys := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				err := e.m.Do(context.Background(), func(ctx context.Context) error {
					return e.ob.Record(ctx, outbox.Message{Subject: "s", Key: keys[(w+i)%len(keys)]})
				})
				assert.NoError(t, err)
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		})
	}
	wg.Wait()
	eventually(t, "all published", func() bool { return rec.distinct() == writers*each })
	stop()

	seqs := e.keySeqs(t)
	next := map[string]int64{}
	for _, p := range rec.all() {
		s := seqs[p.m.ID]
		require.Equal(t, s.Key, p.m.Key)
		next[s.Key]++
		require.Equal(t, next[s.Key], s.Seq, "key %s published out of commit order", s.Key)
	}
	assert.Len(t, rec.all(), writers*each, "one relay, no failure: no duplicate")
}

// The outbox runs on pgx's database/sql driver too: recording, relaying
// (lease, marks, lag, purge) and the inbox.
func TestPgxStdlib(t *testing.T) {
	db := sqlx.MustOpen("pgx", pgtest.URL(t, "outbox"))
	t.Cleanup(func() {
		assert.Zero(t, db.Stats().InUse)
		db.Close()
	})
	e := newEnvOn(t, db)
	ctx := context.Background()
	e.record(t, outbox.Message{ID: "a", Subject: "s", Key: "k", Payload: []byte{0, 1}, Headers: map[string]string{"h": "v"}},
		outbox.Message{ID: "b", Subject: "s"})
	rec := &recorder{}
	r := e.relay(t, rec.publisher("r"), outbox.RelayConfig{Retain: time.Microsecond,
		Observer: uow.ObserverFunc(func(_ context.Context, ev uow.Event) { assert.NoError(t, ev.Err) })})
	n, err := r.Deliver(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	got := rec.all()
	assert.Equal(t, []byte{0, 1}, got[0].m.Payload)
	assert.Equal(t, map[string]string{"h": "v"}, got[0].m.Headers)
	eventually(t, "purged", func() bool {
		_, err := r.Purge(ctx)
		require.NoError(t, err)
		return e.count(t, "true") == 0
	})
	require.NoError(t, r.Release(ctx))

	in, err := outbox.NewInbox(db, outbox.Postgres, outbox.InboxConfig{Table: e.table + "_inbox"})
	require.NoError(t, err)
	for _, want := range []bool{true, false} {
		applied, err := in.Handle(ctx, e.m, "a", func(context.Context) error { return nil })
		require.NoError(t, err)
		assert.Equal(t, want, applied)
	}
}
