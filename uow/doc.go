// Package uow runs database work as lazy units of work that commit or roll
// back as a whole, across every database they touch.
//
// # Units
//
// A [Manager] is created once over the application's databases ([New],
// [WithSource]). [Manager.Begin] attaches a [Unit] to a context. The unit is
// lazy: nothing is sent to a database until a repository first uses a source
// through the context (repo.From) or through the unit's handle on it
// ([Unit.On]); only then is that source's transaction begun, with the unit's
// options. A unit that is never used commits and rolls back without a round
// trip.
//
//	ctx, u := m.Begin(ctx)
//	defer u.Rollback() // no-op after Commit
//	if err := teams.Add(ctx, t); err != nil {
//		return err
//	}
//	return u.Commit()
//
// [Unit.Commit] commits every source in the order they were first used. If a
// COMMIT fails the rest are rolled back, and a [*CommitError] says which
// sources committed, which failed and which were rolled back; a partial
// commit matches [ErrPartialCommit]. A connection lost during COMMIT, or a
// COMMIT interrupted because the unit's context ended, matches
// [ErrCommitUnknown]: the outcome cannot be known, unless the manager was
// made with [ResolveOutcomes], which asks PostgreSQL what became of it.
//
// A unit begun with [Atomic], on a manager made with [TwoPhase], commits
// its PostgreSQL sources with a two-phase commit instead: PREPARE
// TRANSACTION on each, a durable decision, then COMMIT PREPARED, so that
// either all of them commit or none does, and [Manager.Recover] finishes
// what a process that died half-way left prepared.
//
// # Do and repositories bound explicitly
//
// [Manager.Do] runs a callback in a unit: nil commits, an error rolls back, a
// panic rolls back and re-panics. A [Runner] also hands the callback the
// application's repositories bound to the unit, built by a constructor given
// once; services depend on the small [Transactor] interface, which the fake
// in package uowtest implements for tests:
//
//	type Repos struct{ Teams *pg.Teams }
//	tx := uow.NewRunner(m, func(u *uow.Unit) Repos { return Repos{Teams: pg.NewTeams(u.On(db))} })
//	err := tx.Do(ctx, func(ctx context.Context, r Repos) error { return r.Teams.Add(ctx, t) })
//
// A source is named by the *sqlx.DB given to the manager, and only by it:
// [Unit.On](db) for repositories bound explicitly, repo.From(ctx, db) for
// repositories that find the unit in the context (outside a unit it returns
// the pool itself). Inside a unit both give the unit's [*Handle] on that
// database, which also satisfies the DBTX interface that sqlc generates for
// database/sql. [Guard] makes a pool refuse statements sent on it, in
// autocommit, while a unit is active in their context: the trap of passing
// the pool where the unit's handle belongs.
//
// # Options and propagation
//
// [Isolation], [ReadOnly] and [Timeout] configure a unit or a Do call, and
// [WithDefaults] every unit of a manager; contradictory options in one call
// fail with [ErrInvalidOptions]. When a unit is already active in the
// context, [Propagate] decides: [Join] (the default) participates in it,
// and a failure marks it rollback-only, so its Commit fails with
// [ErrRollbackOnly] instead of committing half the work; [Nested] runs in a
// savepoint, itself created lazily; [RequiresNew] runs independently on
// connections of its own; [Mandatory] fails with [ErrNoUnit] without an
// active unit. Joining a unit whose options do not satisfy the request
// (read-only, or a stricter isolation level) fails with [ErrIncompatible].
// A failed statement marks the unit rollback-only too (PostgreSQL aborts the
// transaction), unless it ran in a nested unit that then rolled back. A
// failed SAVEPOINT marks the enclosing unit: the transaction is aborted.
//
// # Retries
//
// An outermost Do with the [Retry] option (on by default for
// Isolation(sql.LevelSerializable)) re-runs the whole callback on a fresh
// unit after a serialization failure or deadlock, at any statement or at
// COMMIT, and after a connection failure at BEGIN ([*BeginError]). A commit
// whose outcome is unknown ([ErrCommitUnknown]) or partial is never retried.
// Joined and nested Do calls never retry by themselves. The HTTP middleware
// re-runs a whole buffered request by the same policy and classification.
// See package retry.
//
// A BEGIN that fails on a pooled connection that broke while idle (its
// backend terminated, the connection reset) is tried again on another
// connection inside the unit, before anything ran, whatever the retry
// policy: a dead connection in the pool never fails a request.
//
// # Hooks
//
// [AfterCommit] and [AfterRollback] register work to run once the outcome is
// final: events to publish, e-mails to send. Hooks of a nested unit that
// rolls back are discarded. A hook's error or panic is reported to the
// [Observer] as a [*HookError] and does not stop the other hooks. Hooks run
// at the end of Commit or Rollback; under the HTTP middleware they run once
// the response has been written, on a context with a deadline of their own.
// Work that must not be lost belongs in the unit's own transaction (an
// outbox), not in a hook.
//
// # Cancellation and waiting
//
// The unit's context (with its [Timeout]) governs every wait: for a pool
// connection, for a BEGIN, for a statement's turn on a transaction shared by
// several goroutines. When it ends, the unit rolls back and releases its
// connections at once, whether or not anyone calls Rollback, interrupting a
// BEGIN, a statement or a COMMIT in flight; Commit then reports the
// context's error. A COMMIT that was already sent is reported as unknown,
// never as rolled back. Each transaction runs on a context of its own that
// only the unit cancels, so database/sql never rolls one back behind the
// unit's back.
//
// # Concurrency
//
// A unit may be shared by the goroutines of one request. No round trip runs
// under the unit's own lock: each source's transaction is begun once
// (concurrent first users wait for that BEGIN, users of other sources do
// not), and statements are serialised per source. A statement issued while
// a cursor (Rows, Row) of the same transaction is still open fails with
// [ErrBusy] rather than corrupt the connection.
//
// # Observability
//
// [WithObserver] receives every begin, commit, rollback, hook failure and
// retry as an [Event]; [NewSlogObserver] logs them with log/slog.
//
// # Where things live
//
// The package is split along its ideas: manager.go (sources, Begin),
// options.go and retry.go (options, retry policy), scope.go (the scope tree,
// states, rollback-only), source.go (the seam between a unit and a kind of
// database), branch.go (one lazily begun transaction per source, BEGIN once,
// statement serialisation), handle.go (the repository-facing handle),
// savepoint.go (nested units), commit.go (commit protocol, rollback, abort),
// hooks.go, cancel.go (the watcher, statement contexts), conn.go (pinned
// connections), guard.go (Guard), resolve.go (ResolveOutcomes),
// twophase.go (Atomic commits and their recovery), replica.go (read
// replicas, Consistency), advisory.go (AdvisoryLock), adapter.go
// (adapter modules), do.go (Do, Runner) and errors.go.
package uow
