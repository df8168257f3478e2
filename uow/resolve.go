package uow

import (
	"context"
	"fmt"
	"time"

	"github.com/uowkit/uowkit/internal/seam"
)

// This file resolves a COMMIT whose answer was lost (ResolveOutcomes): the
// unit learns each source's transaction id before its COMMIT, and when the
// connection breaks during the COMMIT it asks the server, on another
// connection, what became of that transaction.

// ResolveOutcomes makes the manager's units resolve a COMMIT whose outcome
// would otherwise be unknown (the connection broke while it was in flight),
// on PostgreSQL sources (database/sql with lib/pq or pgx, and uowpgx pools).
//
// Before each source's COMMIT the unit reads the transaction's id (SELECT
// pg_current_xact_id_if_assigned(): one more round trip per source). When
// the COMMIT's answer is lost, it asks pg_xact_status on a fresh pooled
// connection, polling while the transaction is still "in progress", for no
// longer than bound (the unit's own context, which may have ended, does not
// cut it short). Then:
//
//   - committed: the source counts as committed. For a unit whose other
//     sources commit too, Commit and Do return nil and the AfterCommit hooks
//     run.
//   - aborted: a definite failure, reported as a failed COMMIT is: a
//     *CommitError with Unknown false, wrapping the driver's error (so a
//     retry policy retries it when it retries that cause), the sources after
//     it rolled back.
//   - no id was assigned (the transaction never wrote): its COMMIT had
//     nothing to lose, so the source counts as committed without asking.
//   - the server cannot be reached, or does not settle, within bound: the
//     outcome stays unknown (ErrCommitUnknown), as without this option.
//
// Reading the id needs PostgreSQL 13 or later. If it fails, no COMMIT is
// sent and the unit rolls back with an error (nothing can have been
// committed). A source whose backend cannot tell transaction ids keeps
// unknown outcomes unknown. ResolveOutcomes panics, when the manager is
// made, for a bound that is not positive.
func ResolveOutcomes(bound time.Duration) ManagerOption {
	return func(m *Manager) {
		if bound <= 0 {
			panic(fmt.Sprintf("uow: ResolveOutcomes(%v): the bound must be positive", bound))
		}
		m.resolve = bound
	}
}

// xact is what a unit learnt of a transaction before its COMMIT.
type xact struct {
	asked    bool   // the id was read (the option is on and the source can)
	assigned bool   // the transaction had an id: it wrote
	id       string // its id, when assigned
}

// xactID reads b's transaction id when the manager resolves outcomes; sem
// is held. An error means the transaction is unusable (PostgreSQL aborts it
// on a failed statement, or the connection is gone): it must not commit.
func (t *txn) xactID(b *branch) (xact, error) {
	if t.m.resolve <= 0 {
		return xact{}, nil
	}
	xt, ok := b.tx.(seam.XactTx)
	if !ok {
		return xact{}, nil
	}
	id, assigned, err := xt.XactID(b.ctx)
	if err != nil {
		return xact{}, err
	}
	return xact{asked: true, assigned: assigned, id: id}, nil
}

// Polling "in progress": the first wait, and the longest.
const (
	resolveFirstDelay = 5 * time.Millisecond
	resolveMaxDelay   = 200 * time.Millisecond
)

// resolve turns err, the unknown outcome of b's COMMIT, into the real one
// when it can: nil when the transaction committed (or never wrote), a
// definite failure when it aborted, and err, still unknown, otherwise.
func (t *txn) resolve(b *branch, x xact, err error) (error, bool) {
	if !x.asked {
		return err, true
	}
	if !x.assigned {
		// The transaction never wrote: whatever became of its COMMIT,
		// nothing of it can be lost.
		return nil, false
	}
	xb, ok := b.src.backend.(seam.XactBackend)
	if !ok {
		return err, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.m.resolve)
	defer cancel()
	var resolved error
	unknown := true
	perr := poll(ctx, func() (bool, error) {
		st, qerr := xb.XactStatus(ctx, x.id)
		if qerr != nil {
			return false, qerr
		}
		switch st {
		case "committed":
			resolved, unknown = nil, false
		case "aborted":
			resolved, unknown = fmt.Errorf("uow: commit rolled back (pg_xact_status of transaction %s, asked after the connection was lost): %w", x.id, err), false
		case "in progress":
			return false, fmt.Errorf("transaction %s still in progress", x.id)
		default:
			// Too old for the server to remember: it will not settle.
			resolved = fmt.Errorf("%w (pg_xact_status of transaction %s: %q)", err, x.id, st)
		}
		return true, nil
	})
	if perr != nil {
		return fmt.Errorf("%w (not resolved within %v: %v)", err, t.m.resolve, perr), true
	}
	return resolved, unknown
}
