package uow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/seam"
	"github.com/uowkit/uowkit/uow"
)

// Commit waits for a BEGIN that another goroutine has in flight, but no
// longer than the unit's context: when it ends, the BEGIN is interrupted,
// the work that needed it was not done, and nothing commits.
func TestCommitDoesNotOutwaitTheContextOnABeginInFlight(t *testing.T) {
	db := pgtest.Open(t, "uow")
	db.SetMaxOpenConns(1)
	hold, err := db.Connx(context.Background()) // the pool's only connection
	require.NoError(t, err)
	defer hold.Close()
	m := uow.New(db)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	before := db.Stats().WaitCount
	ctx, u := m.Begin(ctx)
	stmt := make(chan error, 1)
	go func() { _, err := u.On(db).ExecContext(ctx, `SELECT 1`); stmt <- err }()
	waitForPoolWaiter(t, db, before) // the BEGIN waits for the pool
	done := make(chan error, 1)
	go func() { done <- u.Commit() }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(30 * time.Second):
		hold.Close()
		t.Fatal("Commit waited for the pool past the unit's deadline")
	}
	require.Error(t, <-stmt)
}

// A nested unit still open when its root rolls back (here: the root's
// context ended) had its work undone: its AfterRollback hooks run, before
// the root's.
func TestOpenNestedUnitsHooksFollowTheRoot(t *testing.T) {
	db := pgtest.Open(t, "uow")
	table := newTable(t, db)
	m := uow.New(db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, root := m.Begin(ctx)
	defer root.Rollback()
	var ran []string
	require.NoError(t, root.AfterRollback(func(context.Context) error { ran = append(ran, "root"); return nil }))
	nctx, n := m.Begin(ctx, uow.Propagate(uow.Nested))
	require.NoError(t, n.AfterRollback(func(context.Context) error { ran = append(ran, "nested"); return nil }))
	require.NoError(t, n.AfterCommit(func(context.Context) error { ran = append(ran, "never"); return nil }))
	require.NoError(t, insert(nctx, db, table, "x"))
	cancel()            // the watcher rolls everything back
	_ = root.Rollback() // waits until the abort is over
	require.NoError(t, n.Rollback(), "already over: nothing to do")
	assert.Equal(t, []string{"nested", "root"}, ran)
	assert.Zero(t, count(t, db, table))
}

// cancelOnCommit ends the unit's context just as its COMMIT is about to go.
type cancelOnCommit struct{ cancel context.CancelFunc }

func (o cancelOnCommit) Start(ctx context.Context, e uow.Event) context.Context {
	if e.Kind == uow.EventCommit {
		o.cancel()
		time.Sleep(50 * time.Millisecond) // gives the watcher time to run: it must not matter
	}
	return ctx
}
func (cancelOnCommit) End(context.Context, uow.Event) {}

// A COMMIT that never left the process is a certain rollback, never an
// unknown outcome, however the abort and the COMMIT interleave.
func TestACommitNeverSentIsARollback(t *testing.T) {
	db, counts := pgtest.OpenCounting(t, "uow")
	table := newTable(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := uow.New(db, uow.WithObserver(cancelOnCommit{cancel}))
	ctx, u := m.Begin(ctx)
	defer u.Rollback()
	require.NoError(t, insert(ctx, db, table, "x"))
	err := u.Commit()
	require.Error(t, err)
	if counts.Commits.Load() == 0 {
		require.NotErrorIs(t, err, uow.ErrCommitUnknown, "no COMMIT was sent: %v", err)
		require.ErrorIs(t, err, context.Canceled)
	}
	assert.Zero(t, count(t, db, table))
}

// stallBackend's savepoint RELEASE stalls until its context ends, as a
// statement on a dead network does.
type stallBackend struct{}
type stallTx struct{}

func (stallBackend) Begin(context.Context, seam.TxOptions) (seam.Tx, error) { return stallTx{}, nil }
func (stallBackend) BeginAttempts() int                                     { return 0 }
func (stallBackend) Fatal(error) bool                                       { return true }
func (stallTx) Commit() error                                               { return nil }
func (stallTx) Rollback() error                                             { return nil }
func (stallTx) Exec(ctx context.Context, stmt string) error {
	if len(stmt) >= 7 && stmt[:7] == "RELEASE" {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

type stallKey struct{}

// A savepoint statement is interrupted when the unit's context ends: the
// abort, and a Rollback waiting for it, do not wait behind it.
func TestSavepointStatementsEndWithTheUnit(t *testing.T) {
	key := &stallKey{}
	m := uow.New(nil, seam.AddSource("stall", key, stallBackend{}).(uow.ManagerOption))
	ctx, root := m.Begin(context.Background(), uow.Timeout(100*time.Millisecond))
	nctx, n := m.Begin(ctx, uow.Propagate(uow.Nested))
	require.NoError(t, seam.Run(n, key, nctx, false, func(context.Context, seam.Tx) (seam.Cursor, error) { return nil, nil }))
	released := make(chan error, 1)
	go func() { released <- n.Commit() }() // RELEASE SAVEPOINT stalls
	select {
	case err := <-released:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(30 * time.Second):
		t.Fatal("the RELEASE outlived the unit's deadline")
	}
	_ = root.Rollback()
}
