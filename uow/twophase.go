package uow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/uowkit/uowkit/internal/seam"
	"github.com/uowkit/uowkit/retry"
)

// This file holds the two-phase commit of an Atomic unit over PostgreSQL
// sources, and its recovery. The protocol, for a unit whose global id is
// <prefix>.<random>:
//
//  1. PREPARE TRANSACTION '<id>.<source index>' on every source, in order
//     of first use. A failure, or the unit's context ending, rolls every
//     branch back (ROLLBACK PREPARED for those prepared).
//  2. The decision: INSERT (<id>, commit = true) into the decisions table
//     of the Decisions source, in a transaction of its own. It is the
//     commit point. Recovery may have decided first (commit = false, for a
//     coordinator slower than Grace): the primary key lets only one
//     decision in.
//  3. COMMIT PREPARED on every source.
//
// Recovery (Manager.Recover) finds this application's prepared transactions
// by prefix and finishes each one as its unit's decision says; one with no
// decision, older than Grace, is rolled back after an abort decision is
// recorded in its place (presumed abort).

// TwoPhaseConfig configures two-phase commit (see TwoPhase).
type TwoPhaseConfig struct {
	// Prefix starts the global id of every prepared transaction of this
	// application: recovery finishes only those. A letter, then up to 31
	// letters, digits or underscores. Required.
	Prefix string
	// Decisions is the source whose table records commit decisions: a
	// database given to New or WithSource, or an adapter's pool
	// (uowpgx.WithPool). It need not take part in the units. Required.
	Decisions any
	// Table is the decisions table, created with TwoPhaseSchema; default
	// DefaultTwoPhaseTable.
	Table string
	// Grace is how long a prepared transaction without a decision is left
	// to its coordinator before recovery rolls it back; a coordinator that
	// has not decided within Grace of its first PREPARE rolls back itself.
	// Default one minute.
	Grace time.Duration
	// FinishTimeout bounds the work after PREPARE that does not depend on
	// the caller's context: settling a decision whose INSERT failed, and
	// each COMMIT PREPARED or ROLLBACK PREPARED. Default 10 seconds.
	FinishTimeout time.Duration
}

// DefaultTwoPhaseTable is the decisions table's default name.
const DefaultTwoPhaseTable = "uowkit_2pc_decisions"

// TwoPhaseSchema returns the statement that creates the decisions table
// named table (DefaultTwoPhaseTable when empty), for an application's
// migrations. A row is the durable decision of one unit: it is written in a
// transaction of its own, committed (and so, with PostgreSQL's default
// synchronous_commit, flushed to the WAL) before the first COMMIT PREPARED.
func TwoPhaseSchema(table string) string {
	if table == "" {
		table = DefaultTwoPhaseTable
	}
	return "CREATE TABLE IF NOT EXISTS " + table + ` (
	gid        text PRIMARY KEY,
	commit     boolean NOT NULL,
	decided_at timestamptz NOT NULL DEFAULT now()
)`
}

var (
	prefixPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}$`)
	tablePattern  = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

// TwoPhase lets the manager's Atomic units commit several PostgreSQL
// sources atomically (see Atomic), and Recover finish what a dead process
// left prepared. Every source an Atomic unit uses must be PostgreSQL
// (database/sql with lib/pq or pgx, or a uowpgx pool) with
// max_prepared_transactions > 0; Recover checks it.
//
// TwoPhase panics, when the manager is made, for a missing or malformed
// Prefix, a Decisions that is not one of the manager's sources, a
// malformed Table, or a negative duration.
func TwoPhase(cfg TwoPhaseConfig) ManagerOption {
	if !prefixPattern.MatchString(cfg.Prefix) {
		panic(fmt.Sprintf("uow: TwoPhase: Prefix %q: want a letter, then up to 31 letters, digits or underscores", cfg.Prefix))
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTwoPhaseTable
	}
	if !tablePattern.MatchString(cfg.Table) {
		panic(fmt.Sprintf("uow: TwoPhase: Table %q is not a plain (optionally schema-qualified) identifier", cfg.Table))
	}
	if cfg.Decisions == nil {
		panic("uow: TwoPhase: Decisions is nil")
	}
	if cfg.Grace < 0 || cfg.FinishTimeout < 0 {
		panic(fmt.Sprintf("uow: TwoPhase: negative Grace (%v) or FinishTimeout (%v)", cfg.Grace, cfg.FinishTimeout))
	}
	if cfg.Grace == 0 {
		cfg.Grace = time.Minute
	}
	if cfg.FinishTimeout == 0 {
		cfg.FinishTimeout = 10 * time.Second
	}
	return func(m *Manager) { m.twoPhase = &twoPhase{cfg: cfg} }
}

// twoPhase is a manager's two-phase commit configuration.
type twoPhase struct {
	cfg       TwoPhaseConfig
	decisions seam.OutsideBackend
	name      string // the decisions source's name
}

// bind finds the decisions source, once every source is added.
func (tp *twoPhase) bind(m *Manager) {
	s := m.byKey[tp.cfg.Decisions]
	if s == nil {
		panic("uow: TwoPhase: Decisions is not a source of the manager")
	}
	ob, ok := s.backend.(seam.OutsideBackend)
	if !ok {
		panic(fmt.Sprintf("uow: TwoPhase: source %q cannot run statements outside a unit", s.name))
	}
	tp.decisions, tp.name = ob, s.name
}

// twoPhaseStep, when set (by tests), is called at each point where a crash
// leaves a different state behind: "prepared" after each source's PREPARE,
// "decided" once the decision is durable, "committed" after each source's
// COMMIT PREPARED.
var twoPhaseStep func(step, source string)

func stepped(step, source string) {
	if twoPhaseStep != nil {
		twoPhaseStep(step, source)
	}
}

// gid is the global id of unit's transaction on b's source.
func gid(unit string, b *branch) string { return unit + "." + strconv.Itoa(b.src.index) }

// commitTwoPhase commits branches atomically (see the file comment).
func (t *txn) commitTwoPhase(branches []*branch) error {
	tp := t.m.twoPhase
	if err := t.awaitBegins(branches); err != nil {
		return err
	}
	for _, b := range branches {
		_, canPrepare := b.tx.(seam.PrepareTx)
		_, outside := b.src.backend.(seam.OutsideBackend)
		if !canPrepare || !outside {
			err := fmt.Errorf("uow: two-phase commit: source %q cannot prepare transactions", b.src.name)
			return errors.Join(err, t.rollbackAll(branches, err))
		}
	}
	unit := tp.cfg.Prefix + "." + randomID()
	deadline := time.Now().Add(tp.cfg.Grace)

	// Phase one.
	for i, b := range branches {
		if err := t.prepareBranch(b, gid(unit, b)); err != nil {
			ce := &CommitError{Failed: b.src.name, Err: err}
			t.abandon(unit, branches[:i+1], branches[i+1:], b, ce)
			return ce
		}
		stepped("prepared", b.src.name)
	}

	// The decision.
	t.mu.Lock()
	aborted := t.aborted
	t.mu.Unlock()
	var undecided error
	switch {
	case aborted:
		undecided = fmt.Errorf("uow: commit not decided: %w", context.Cause(t.ctx))
	case !time.Now().Before(deadline):
		undecided = fmt.Errorf("uow: commit not decided: the sources took longer than Grace (%v) to prepare", tp.cfg.Grace)
	}
	if undecided != nil {
		ce := &CommitError{Failed: tp.name, Err: undecided}
		t.abandon(unit, branches, nil, nil, ce)
		return ce
	}
	e := Event{Kind: EventCommit, Source: tp.name, Statement: "decision"}
	octx, start := t.m.start(t.obsCtx(), e)
	commit, err := tp.decide(unit, deadline)
	e.Err = err
	t.m.end(octx, e, start)
	switch {
	case err != nil:
		// Whether the decision was recorded cannot be known now: the
		// branches stay prepared, and recovery finishes them as the
		// decisions table says once it can be read.
		return &CommitError{Failed: tp.name, Unknown: true,
			Err: fmt.Errorf("uow: two-phase commit %s: recording the decision: %w", unit, err)}
	case !commit:
		ce := &CommitError{Failed: tp.name,
			Err: fmt.Errorf("uow: two-phase commit %s: recovery decided to roll back (the coordinator took longer than Grace, %v)", unit, tp.cfg.Grace)}
		t.abandon(unit, branches, nil, nil, ce)
		return ce
	}
	stepped("decided", "")

	// Phase two: the work is committed; make it visible everywhere.
	var committed, pending []string
	var first error
	for _, b := range branches {
		if err := t.finishPrepared(b, gid(unit, b), true); err != nil {
			pending = append(pending, b.src.name)
			if first == nil {
				first = err
			}
			continue
		}
		committed = append(committed, b.src.name)
		stepped("committed", b.src.name)
	}
	if len(pending) > 0 {
		return &CommitError{Committed: committed, Failed: pending[0], Pending: pending, Err: first}
	}
	return nil
}

// prepareBranch runs b's PREPARE TRANSACTION, which also releases b's
// connection.
func (t *txn) prepareBranch(b *branch, gid string) error {
	b.sem <- struct{}{}
	defer b.release()
	e := Event{Kind: EventCommit, Source: b.src.name, Statement: "PREPARE TRANSACTION"}
	octx, start := t.m.start(t.obsCtx(), e)
	b.closeCursors()
	t.mu.Lock()
	aborted := t.aborted
	if !aborted {
		t.committing = b // an abort from now on interrupts this PREPARE
	}
	t.mu.Unlock()
	var err error
	if aborted {
		err = fmt.Errorf("uow: prepare not sent: %w", context.Cause(t.ctx))
		_ = t.finishLocked(b)
	} else {
		err = b.tx.(seam.PrepareTx).Prepare(b.ctx, gid)
		t.mu.Lock()
		t.committing = nil
		t.mu.Unlock()
		b.closed, b.cursors = true, nil
		if err != nil && b.ctx.Err() != nil && !errors.Is(err, context.Cause(b.ctx)) {
			err = fmt.Errorf("%w (%w)", err, context.Cause(b.ctx))
		}
	}
	e.Err = err
	t.m.end(octx, e, start)
	return err
}

// abandon rolls back a two-phase commit that was not decided: the branches
// that were (or may have been) prepared with ROLLBACK PREPARED, the others
// plainly. A ROLLBACK PREPARED that fails leaves its branch to recovery,
// which rolls back a prepared transaction without a decision: either way
// nothing commits. ce gets every source but failed's as rolled back.
func (t *txn) abandon(unit string, prepared, unprepared []*branch, failed *branch, ce *CommitError) {
	for _, b := range prepared {
		err := t.finishPrepared(b, gid(unit, b), false)
		if b == failed {
			continue // its PREPARE failed: there is nothing to roll back, or recovery will
		}
		if err != nil {
			ce.Err = errors.Join(ce.Err, fmt.Errorf("uow: ROLLBACK PREPARED on %q failed (recovery will roll it back): %w", b.src.name, err))
		}
		ce.RolledBack = append(ce.RolledBack, b.src.name)
	}
	for _, b := range unprepared {
		_ = t.finish(b)
		ce.RolledBack = append(ce.RolledBack, b.src.name)
	}
}

// finishPrepared runs COMMIT PREPARED (or ROLLBACK PREPARED) of gid on b's
// source, on a pooled connection, trying again for FinishTimeout while the
// server cannot be reached. A ROLLBACK PREPARED of a transaction that does
// not exist (its PREPARE failed) succeeds.
func (t *txn) finishPrepared(b *branch, gid string, commit bool) error {
	e := Event{Kind: EventRollback, Source: b.src.name, Statement: "ROLLBACK PREPARED"}
	if commit {
		e = Event{Kind: EventCommit, Source: b.src.name, Statement: "COMMIT PREPARED"}
	}
	octx, start := t.m.start(t.obsCtx(), e)
	err := t.m.twoPhase.finish(b.src.backend.(seam.OutsideBackend), gid, commit)
	e.Err = err
	t.m.end(octx, e, start)
	return err
}

// finish is finishPrepared's statement, shared with recovery.
func (tp *twoPhase) finish(ob seam.OutsideBackend, gid string, commit bool) error {
	stmt := "ROLLBACK PREPARED '" + gid + "'"
	if commit {
		stmt = "COMMIT PREPARED '" + gid + "'"
	}
	ctx, cancel := context.WithTimeout(context.Background(), tp.cfg.FinishTimeout)
	defer cancel()
	return poll(ctx, func() (bool, error) {
		_, err := ob.ExecOutside(ctx, stmt)
		if err == nil || (!commit && undefinedObject(err)) {
			return true, nil
		}
		if _, ok := retry.SQLState(err); ok {
			return true, err // the server answered: trying again will not help
		}
		return false, err
	})
}

// decide records unit's decision to commit, before deadline. It returns
// the decision that holds: commit, or an abort recovery recorded first. An
// error means the decision cannot be known within FinishTimeout.
func (tp *twoPhase) decide(unit string, deadline time.Time) (bool, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	_, err := tp.decisions.ExecOutside(ctx,
		"INSERT INTO "+tp.cfg.Table+" (gid, commit) VALUES ($1, true)", unit)
	cancel()
	if err == nil {
		return true, nil
	}
	// Refused (recovery decided first), or interrupted with its fate
	// unknown: settle it.
	commit, serr := tp.settle(unit)
	if serr != nil {
		return false, fmt.Errorf("%w (settling it: %w)", err, serr)
	}
	return commit, nil
}

// settleQuery records an abort decision for a unit that has none, and
// returns the decision that holds.
func (tp *twoPhase) settleQuery() string {
	return "WITH ins AS (INSERT INTO " + tp.cfg.Table + " (gid, commit) VALUES ($1, false) ON CONFLICT (gid) DO NOTHING RETURNING commit) " +
		"SELECT commit::text FROM ins UNION ALL SELECT commit::text FROM " + tp.cfg.Table + " WHERE gid = $1"
}

// settle returns unit's decision, recording an abort if there is none yet,
// trying for FinishTimeout while the server cannot be reached.
func (tp *twoPhase) settle(unit string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tp.cfg.FinishTimeout)
	defer cancel()
	var commit bool
	err := poll(ctx, func() (bool, error) {
		rows, err := tp.decisions.QueryOutside(ctx, tp.settleQuery(), unit)
		if err != nil {
			_, answered := retry.SQLState(err)
			return answered, err
		}
		if len(rows) == 0 {
			return false, errors.New("no decision row")
		}
		commit = rows[0][0] == "true"
		return true, nil
	})
	return commit, err
}

// poll calls f until it says it is done, backing off, for as long as ctx
// lets it; it returns f's last error.
func poll(ctx context.Context, f func() (done bool, err error)) error {
	delay := resolveFirstDelay
	for {
		done, err := f()
		if done {
			return err
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		case <-timer.C:
		}
		delay = min(2*delay, resolveMaxDelay)
	}
}

// undefinedObject reports PostgreSQL's "prepared transaction ... does not
// exist".
func undefinedObject(err error) bool {
	code, _ := retry.SQLState(err)
	return code == "42704"
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Recovery is what Manager.Recover did.
type Recovery struct {
	// Committed and RolledBack are the global ids of the prepared
	// transactions it finished.
	Committed, RolledBack []string
	// Waiting are the global ids of prepared transactions without a
	// decision, younger than Grace: their coordinator may still be
	// deciding.
	Waiting []string
	// Forgotten is the number of decisions it deleted: older than twice
	// Grace, with no transaction of their unit left prepared.
	Forgotten int
}

// Recover finishes the two-phase commits that this application (the
// manager's TwoPhase Prefix) left prepared on its sources: a process that
// died after PREPARE, or lost its connection before COMMIT PREPARED. Each
// prepared transaction is committed if its unit's decision is to commit,
// and rolled back if it is to roll back, or if there is none and the
// transaction is older than Grace (presumed abort: an abort decision is
// recorded first, so that a slow coordinator cannot commit afterwards).
// Decisions no longer needed are deleted.
//
// Call it at start-up, before serving, and then periodically (RecoverEvery):
// a prepared transaction holds its locks until it is finished. It first
// checks that every PostgreSQL source allows prepared transactions
// (ErrNoPreparedTransactions otherwise) and that the decisions table exists.
// Several processes may recover at once.
func (m *Manager) Recover(ctx context.Context) (Recovery, error) {
	var rec Recovery
	tp := m.twoPhase
	if tp == nil {
		return rec, fmt.Errorf("%w: Recover needs a manager made with TwoPhase", ErrInvalidOptions)
	}
	if err := m.CheckTwoPhase(ctx); err != nil {
		return rec, err
	}
	old, err := tp.decisions.QueryOutside(ctx,
		"SELECT gid FROM "+tp.cfg.Table+" WHERE decided_at < now() - $1::text::interval",
		strconv.FormatInt(2*tp.cfg.Grace.Microseconds(), 10)+" microseconds")
	if err != nil {
		return rec, fmt.Errorf("uow: recover: reading decisions on %q: %w", tp.name, err)
	}
	var errs []error
	complete := true
	left := map[string]bool{} // units with a transaction still prepared
	decided := map[string]bool{}
	for _, s := range m.sources {
		ob, ok := s.backend.(seam.OutsideBackend)
		if !ok {
			continue
		}
		rows, err := ob.QueryOutside(ctx,
			`SELECT gid, (extract(epoch FROM now() - prepared) * 1000)::bigint::text FROM pg_prepared_xacts `+
				`WHERE database = current_database() AND left(gid, length($1)) = $1 ORDER BY prepared`,
			tp.cfg.Prefix+".")
		if err != nil {
			complete = false
			errs = append(errs, fmt.Errorf("uow: recover %q: %w", s.name, err))
			continue
		}
		for _, r := range rows {
			g := r[0]
			unit := g[:max(strings.LastIndexByte(g, '.'), 0)]
			age, _ := strconv.ParseInt(r[1], 10, 64)
			commit, known := decided[unit]
			if !known {
				d, err := tp.decisions.QueryOutside(ctx, "SELECT commit::text FROM "+tp.cfg.Table+" WHERE gid = $1", unit)
				if err != nil {
					errs = append(errs, fmt.Errorf("uow: recover %s: reading its decision: %w", g, err))
					left[unit] = true
					continue
				}
				switch {
				case len(d) > 0:
					commit = d[0][0] == "true"
				case time.Duration(age)*time.Millisecond < tp.cfg.Grace:
					rec.Waiting = append(rec.Waiting, g)
					left[unit] = true
					continue
				default:
					if commit, err = tp.settle(unit); err != nil {
						errs = append(errs, fmt.Errorf("uow: recover %s: recording an abort: %w", g, err))
						left[unit] = true
						continue
					}
				}
				decided[unit] = commit
			}
			if err := tp.finish(ob, g, commit); err != nil {
				if !undefinedObject(err) { // else another process finished it
					errs = append(errs, fmt.Errorf("uow: recover %s on %q: %w", g, s.name, err))
					left[unit] = true
				}
				continue
			}
			if commit {
				rec.Committed = append(rec.Committed, g)
			} else {
				rec.RolledBack = append(rec.RolledBack, g)
			}
		}
	}
	if complete {
		// A decision older than twice Grace was recorded after every
		// PREPARE of its unit, before the listing above: a unit with
		// nothing listed has finished.
		for _, r := range old {
			if left[r[0]] {
				continue
			}
			n, err := tp.decisions.ExecOutside(ctx, "DELETE FROM "+tp.cfg.Table+" WHERE gid = $1", r[0])
			if err != nil {
				errs = append(errs, fmt.Errorf("uow: recover: forgetting decision %s: %w", r[0], err))
				break
			}
			rec.Forgotten += int(n)
		}
	}
	return rec, errors.Join(errs...)
}

// CheckTwoPhase checks what two-phase commits need: every PostgreSQL source
// allows prepared transactions (ErrNoPreparedTransactions otherwise), and
// the decisions table exists. Recover calls it.
func (m *Manager) CheckTwoPhase(ctx context.Context) error {
	tp := m.twoPhase
	if tp == nil {
		return fmt.Errorf("%w: CheckTwoPhase needs a manager made with TwoPhase", ErrInvalidOptions)
	}
	for _, s := range m.sources {
		ob, ok := s.backend.(seam.OutsideBackend)
		if !ok {
			continue
		}
		rows, err := ob.QueryOutside(ctx, `SELECT current_setting('max_prepared_transactions')`)
		if err != nil {
			return fmt.Errorf("uow: checking source %q: %w", s.name, err)
		}
		if len(rows) == 0 || rows[0][0] == "0" {
			return fmt.Errorf("%w on source %q: set it (postgresql.conf, or ALTER SYSTEM) and restart the server", ErrNoPreparedTransactions, s.name)
		}
	}
	if _, err := tp.decisions.QueryOutside(ctx, "SELECT gid FROM "+tp.cfg.Table+" LIMIT 0"); err != nil {
		return fmt.Errorf("uow: the two-phase decisions table %s on source %q: %w (create it with uow.TwoPhaseSchema)", tp.cfg.Table, tp.name, err)
	}
	return nil
}

// RecoverEvery runs Recover at once and then every interval, until ctx
// ends, telling report (which may be nil) each round's result.
func (m *Manager) RecoverEvery(ctx context.Context, interval time.Duration, report func(Recovery, error)) {
	if interval <= 0 {
		panic(fmt.Sprintf("uow: RecoverEvery(%v): the interval must be positive", interval))
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		rec, err := m.Recover(ctx)
		if report != nil && ctx.Err() == nil {
			report(rec, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
