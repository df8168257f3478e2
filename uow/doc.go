// Package uow runs database work as lazy units of work that commit or roll
// back as a whole, across every database they touch.
//
// # Units
//
// A [Manager] is created once over the application's databases ([New],
// [WithSource]). [Manager.Begin] attaches a [Unit] to a context. The unit is
// lazy: nothing is sent to a database until a repository first uses a source
// through the context ([repo.From]) or through one of the unit's handles
// ([Unit.DB], [Unit.Source], [Unit.On]); only then is that source's
// transaction begun, with the unit's options. A unit that is never used
// commits and rolls back without a round trip.
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
// commit matches [ErrPartialCommit]. A broken connection during COMMIT
// matches [ErrCommitUnknown]: the outcome cannot be known.
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
//	tx := uow.NewRunner(m, func(u *uow.Unit) Repos { return Repos{Teams: pg.NewTeams(u.DB())} })
//	err := tx.Do(ctx, func(ctx context.Context, r Repos) error { return r.Teams.Add(ctx, t) })
//
// # Options and propagation
//
// [Isolation], [ReadOnly] and [Timeout] configure a unit or a Do call, and
// [WithDefaults] every unit of a manager. When a unit is already active in
// the context, [Propagate] decides: [Join] (the default) participates in it,
// and a failure marks it rollback-only, so its Commit fails with
// [ErrRollbackOnly] instead of committing half the work; [Nested] runs in a
// savepoint, itself created lazily; [RequiresNew] runs independently on
// connections of its own; [Mandatory] fails with [ErrNoUnit] without an
// active unit. Joining a unit whose options do not satisfy the request
// (read-only, or a stricter isolation level) fails with [ErrIncompatible].
// A failed statement marks the unit rollback-only too (PostgreSQL aborts the
// transaction), unless it ran in a nested unit that then rolled back.
//
// # Retries
//
// An outermost Do with the [Retry] option (on by default for
// Isolation(sql.LevelSerializable)) re-runs the whole callback on a fresh
// unit after a serialization failure or deadlock, at any statement or at
// COMMIT, and after a connection failure at BEGIN. A commit whose outcome is
// unknown ([ErrCommitUnknown]) or partial is never retried. Joined and nested
// Do calls never retry by themselves. See package retry.
//
// # Hooks
//
// [AfterCommit] and [AfterRollback] register work to run once the outcome is
// final: events to publish, e-mails to send. Hooks of a nested unit that
// rolls back are discarded. A hook's error or panic is reported to the
// [Observer] as a [*HookError] and does not stop the other hooks.
//
// # Cancellation
//
// Statements run on the caller's context, but each transaction is begun on a
// context detached from cancellation, so that database/sql never rolls it
// back behind the unit's back: the unit decides. When the unit's context is
// cancelled or its [Timeout] passes, the unit rolls back and releases its
// connections at once, whether or not anyone calls Rollback, and Commit then
// reports the context's error.
//
// # Concurrency
//
// A unit may be shared by the goroutines of one request. Its [Handle]
// serialises statements on each connection, and fails with [ErrBusy] rather
// than corrupt the connection when a statement is issued while a cursor
// (Rows, Row) of the same transaction is still open.
//
// # Observability
//
// [WithObserver] receives every begin, commit, rollback, hook failure and
// retry as an [Event]; [NewSlogObserver] logs them with log/slog.
package uow
