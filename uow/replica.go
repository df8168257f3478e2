package uow

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/seam"
)

// This file routes read-only units to a source's streaming replicas, and
// gives read-your-writes: a unit that commits under a Consistency records
// each replicated source's WAL position after its COMMIT, and a read-only
// unit under that Consistency reads a replica only once it has replayed
// past that position.

// Replicas configures the streaming replicas of a source (WithReplicas).
type Replicas struct {
	// DBs are the replicas, hot standbys of the source's primary.
	DBs []*sqlx.DB
	// MaxWait bounds how long a read-only unit with a read-your-writes
	// position (a Consistency in its context) waits for a replica to replay
	// past it, polling; then it reads the primary. Zero: the primary at
	// once when no replica has caught up.
	MaxWait time.Duration
	// Cooldown is how long a replica that could not be reached is skipped.
	// Default 5 seconds.
	Cooldown time.Duration
}

// Errors a fallback to the primary reports (EventReplicaFallback's Err).
var (
	// ErrNoReplica: every replica of the source is down or was skipped
	// after a failure, within its Cooldown.
	ErrNoReplica = errors.New("uow: no replica reachable")
	// ErrReplicaBehind: no replica had replayed past the unit's
	// read-your-writes position within MaxWait.
	ErrReplicaBehind = errors.New("uow: no replica has replayed past the position to read after")
)

// WithReplicas gives the source whose database is primary (given to New or
// WithSource; the option may come before or after) streaming replicas.
// Units begun ReadOnly then run on a replica: round-robin over those
// reachable, skipping one that failed for Cooldown. Read-write units, and
// every write, run on the primary; a repository names the source by its
// primary (Unit.On(primary), repo.From(ctx, primary)) either way. When no
// replica is usable, a read-only unit runs on the primary, and the Observer
// gets an EventReplicaFallback saying why.
//
// Without a Consistency in the context, a read-only unit may read a replica
// that has not yet replayed the latest commits: its reads may be stale (by
// the replication lag, usually milliseconds). See Consistency for
// read-your-writes.
//
// WithReplicas panics, when the manager is made, for a primary that is not
// a database/sql source of the manager, no or nil replicas, a replica that
// is also a source, a negative duration, or a source name that a
// Consistency cannot carry (letters, digits, '_', '-' and '.').
func WithReplicas(primary *sqlx.DB, r Replicas) ManagerOption {
	if primary == nil || len(r.DBs) == 0 || slices.Contains(r.DBs, nil) {
		panic("uow: WithReplicas: nil primary, or no replicas, or a nil one")
	}
	backends := make([]replicaBackend, len(r.DBs))
	for i, db := range r.DBs {
		backends[i] = sqlBackend{db}
	}
	return withReplicas(primary, backends, r.MaxWait, r.Cooldown)
}

// replicaBackend is what a replica needs: BEGIN, and statements outside a
// unit (its replay position).
type replicaBackend interface {
	seam.Backend
	seam.OutsideBackend
}

func withReplicas(key any, backends []replicaBackend, maxWait, cooldown time.Duration) ManagerOption {
	if maxWait < 0 || cooldown < 0 {
		panic(fmt.Sprintf("uow: WithReplicas: negative MaxWait (%v) or Cooldown (%v)", maxWait, cooldown))
	}
	if cooldown == 0 {
		cooldown = 5 * time.Second
	}
	return func(m *Manager) {
		m.replicas = append(m.replicas, pendingReplicas{key, backends, maxWait, cooldown})
	}
}

type pendingReplicas struct {
	primary           any
	backends          []replicaBackend
	maxWait, cooldown time.Duration
}

var sourceNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// backendKey returns what would identify b as a source: its database for
// database/sql, else b itself (an adapter's backend is keyed by its pool,
// which its Keyed method returns).
func backendKey(b replicaBackend) any {
	switch b := b.(type) {
	case sqlBackend:
		return b.db
	case interface{ Key() any }:
		return b.Key()
	}
	return b
}

// bindReplicas attaches the replicas to their sources, once every source is
// added.
func (m *Manager) bindReplicas() {
	for _, p := range m.replicas {
		s := m.byKey[p.primary]
		switch {
		case s == nil:
			panic("uow: WithReplicas: the primary is not a source of the manager")
		case s.replicas != nil:
			panic(fmt.Sprintf("uow: WithReplicas: source %q given replicas twice", s.name))
		case !sourceNamePattern.MatchString(s.name):
			panic(fmt.Sprintf("uow: WithReplicas: source name %q: want letters, digits, '_', '-' or '.'", s.name))
		}
		rs := &replicaSet{maxWait: p.maxWait, cooldown: p.cooldown}
		for i, b := range p.backends {
			if m.byKey[backendKey(b)] != nil {
				panic(fmt.Sprintf("uow: WithReplicas: replica %d of %q is also a source", i, s.name))
			}
			rs.list = append(rs.list, &replica{name: s.name + ".replica" + strconv.Itoa(i+1), backend: b})
		}
		s.replicas = rs
	}
	m.replicas = nil
}

// replicaSet is a source's replicas.
type replicaSet struct {
	list     []*replica
	next     atomic.Uint32 // round-robin
	maxWait  time.Duration
	cooldown time.Duration
}

// replica is one replica of a source.
type replica struct {
	name    string
	backend replicaBackend
	down    atomic.Int64 // unix nanoseconds until which it is skipped
}

func (r *replica) usable(now time.Time) bool { return now.UnixNano() >= r.down.Load() }

// fail skips r for cooldown.
func (r *replica) fail(cooldown time.Duration) {
	r.down.Store(time.Now().Add(cooldown).UnixNano())
}

// replayed returns how far r has replayed the primary's WAL.
func (r *replica) replayed(ctx context.Context) (uint64, error) {
	rows, err := r.backend.QueryOutside(ctx, `SELECT pg_last_wal_replay_lsn()::text`)
	if err != nil {
		return 0, err
	}
	if len(rows) == 0 || rows[0][0] == "" {
		return 0, errors.New("uow: not a replica (pg_last_wal_replay_lsn() is NULL)")
	}
	return parseLSN(rows[0][0])
}

// choose picks the replica a read-only unit begins on, given the position
// it must read after (0: none), skipping exclude; nil means the primary,
// with why.
func (rs *replicaSet) choose(ctx context.Context, after uint64, exclude *replica) (*replica, error) {
	n := uint32(len(rs.list))
	start := rs.next.Add(1)
	var deadline time.Time
	why := ErrNoReplica
	var lastErr error
	for {
		now := time.Now()
		tried := false
		for i := range n {
			r := rs.list[(start+i)%n]
			if r == exclude || !r.usable(now) {
				continue
			}
			tried = true
			if after == 0 {
				return r, nil
			}
			pos, err := r.replayed(ctx)
			switch {
			case err != nil && ctx.Err() != nil:
				return nil, fmt.Errorf("%w: %w", why, context.Cause(ctx))
			case err != nil:
				r.fail(rs.cooldown)
				lastErr = err
			case pos >= after:
				return r, nil
			default:
				why = ErrReplicaBehind
			}
		}
		if !tried || why != ErrReplicaBehind {
			if lastErr != nil {
				return nil, fmt.Errorf("%w: %w", ErrNoReplica, lastErr)
			}
			return nil, ErrNoReplica
		}
		if deadline.IsZero() {
			deadline = now.Add(rs.maxWait)
		}
		if !now.Before(deadline) {
			return nil, fmt.Errorf("%w (%s, waited %v)", ErrReplicaBehind, formatLSN(after), rs.maxWait)
		}
		timer := time.NewTimer(min(5*time.Millisecond, time.Until(deadline)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("%w: %w", ErrReplicaBehind, context.Cause(ctx))
		case <-timer.C:
		}
	}
}

// beginBackend returns the backend b's BEGIN goes to: a replica for a
// read-only unit on a replicated source, else the source's own. It reports a
// fallback to the primary.
func (t *txn) beginBackend(b *branch, exclude *replica) (seam.Backend, *replica) {
	rs := b.src.replicas
	if rs == nil || !t.opts.readOnly {
		return b.src.backend, nil
	}
	var after uint64
	if c := ConsistencyFrom(t.ctx); c != nil {
		after = c.position(b.src.name)
	}
	r, err := rs.choose(b.ctx, after, exclude)
	if r != nil {
		return r.backend, r
	}
	t.m.observe(t.obsCtx(), Event{Kind: EventReplicaFallback, Source: b.src.name, Err: err})
	return b.src.backend, nil
}

// recordPositions records, after a successful commit under a Consistency,
// the WAL position of each replicated source the unit wrote to (a read-write
// unit), read on the primary after the COMMIT: a replica that has replayed
// past it shows the unit's work. A position that cannot be read is left as
// it was (a later read may then be stale), and reported to the Observer.
func (t *txn) recordPositions(branches []*branch) {
	if t.opts.readOnly || !replicated(branches) {
		return // nothing to record: no lookup in the context either
	}
	c := ConsistencyFrom(t.ctx)
	if c == nil {
		return
	}
	for _, b := range branches {
		if b.src.replicas == nil {
			continue
		}
		ob, ok := b.src.backend.(seam.OutsideBackend)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rows, err := ob.QueryOutside(ctx, `SELECT pg_current_wal_lsn()::text`)
		cancel()
		var pos uint64
		if err == nil && len(rows) > 0 {
			pos, err = parseLSN(rows[0][0])
		}
		if err != nil {
			t.m.observe(t.obsCtx(), Event{Kind: EventReplicaFallback, Source: b.src.name,
				Err: fmt.Errorf("uow: reading the WAL position after COMMIT (read-your-writes not recorded): %w", err)})
			continue
		}
		c.advance(b.src.name, pos)
	}
}

// replicated reports whether one of branches is on a source with replicas.
func replicated(branches []*branch) bool {
	for _, b := range branches {
		if b.src.replicas != nil {
			return true
		}
	}
	return false
}

// Consistency carries read-your-writes positions from the units that
// commit to the read-only units that follow, per source: put one in a
// context with WithConsistency, give that context to the units (Begin, Do),
// and a read-only unit on a source with replicas reads a replica only once
// it has replayed past what the units before it committed (waiting up to
// the source's MaxWait, else reading the primary). Its String form travels
// between requests: the HTTP middleware (nethttp.Options.Consistency) reads
// it from and writes it to the X-Consistency-LSN header.
//
// Recording costs a write unit one round trip per replicated source, after
// its COMMIT (SELECT pg_current_wal_lsn()); reading costs a read-only unit
// one per replica it checks (SELECT pg_last_wal_replay_lsn()). A zero
// Consistency is ready to use; it is safe for concurrent use.
type Consistency struct {
	mu  sync.Mutex
	pos map[string]uint64
}

// NewConsistency returns an empty Consistency.
func NewConsistency() *Consistency { return &Consistency{} }

// ParseConsistency parses the String form of a Consistency:
// "source=LSN" pairs separated by commas, LSNs as PostgreSQL writes them
// (16/B374D848). The empty string is an empty Consistency.
func ParseConsistency(s string) (*Consistency, error) {
	c := &Consistency{}
	if s == "" {
		return c, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		name, lsn, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !sourceNamePattern.MatchString(name) {
			return nil, fmt.Errorf("uow: consistency %q: want source=LSN pairs separated by commas", s)
		}
		pos, err := parseLSN(lsn)
		if err != nil {
			return nil, fmt.Errorf("uow: consistency %q: %w", s, err)
		}
		c.advance(name, pos)
	}
	return c, nil
}

// String returns the positions as "source=LSN" pairs, sorted by source,
// separated by commas.
func (c *Consistency) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.pos))
	for n := range c.pos {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n + "=" + formatLSN(c.pos[n]))
	}
	return b.String()
}

func (c *Consistency) advance(source string, pos uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pos == nil {
		c.pos = map[string]uint64{}
	}
	if pos > c.pos[source] {
		c.pos[source] = pos
	}
}

func (c *Consistency) position(source string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos[source]
}

type consistencyKey struct{}

func (consistencyKey) String() string { return "uow.Consistency" }

// WithConsistency returns ctx carrying c (see Consistency).
func WithConsistency(ctx context.Context, c *Consistency) context.Context {
	return context.WithValue(ctx, consistencyKey{}, c)
}

// ConsistencyFrom returns the Consistency ctx carries, or nil.
func ConsistencyFrom(ctx context.Context) *Consistency {
	c, _ := ctx.Value(consistencyKey{}).(*Consistency)
	return c
}

// parseLSN parses a pg_lsn's text: two hexadecimal numbers, "X/Y".
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("uow: %q is not a WAL position (want X/Y in hexadecimal)", s)
	}
	return h<<32 | l, nil
}

func formatLSN(p uint64) string {
	return strings.ToUpper(strconv.FormatUint(p>>32, 16) + "/" + strconv.FormatUint(p&0xFFFFFFFF, 16))
}
