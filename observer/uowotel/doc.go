// Package uowotel reports uowkit's units of work to OpenTelemetry: one span
// per unit of work, the parent of its BEGIN, COMMIT, ROLLBACK and savepoint
// spans and of the database driver's own spans, and metrics of unit
// durations, commit latencies, retries, rollbacks and failed commits.
//
// It is a module of its own, github.com/uowkit/uowkit/observer/uowotel, so
// that only the applications that use OpenTelemetry depend on it: the core
// module requires no OpenTelemetry package.
//
// # Setting up
//
// [New] returns a [uow.Observer]; give it to the manager:
//
//	m := uow.New(db, uow.WithObserver(uowotel.New()))
//
// Without options it uses the global TracerProvider and MeterProvider
// (otel.SetTracerProvider, otel.SetMeterProvider), also when they are set
// after New. [WithTracerProvider] and [WithMeterProvider] name others. The
// instrumentation scope is [ScopeName], with [Version] when the module has
// one.
//
// The observer's spans end in the goroutine that runs the unit: export
// through a batching span processor (sdktrace.WithBatcher), so that no unit
// waits for an exporter.
//
// # Spans
//
// A root unit that touches a database gets a span "uow.unit", from its first
// use (its first BEGIN, or a pinned connection) to its end. A unit that
// touches no database (a request that never queried) makes no span and no
// measurement: a lazy unit costs nothing, in traces too. Its children are:
//
//   - "uow.begin", "uow.commit" and "uow.rollback", one per source and
//     operation; "uow.begin" includes the wait for a pool connection and,
//     for a read-only unit begun on a replica, names it (uow.replica);
//   - for an Atomic unit's two-phase commit, one "uow.commit" per step,
//     whose db.operation.name is the step: PREPARE TRANSACTION and COMMIT
//     PREPARED per source, the decision ("decision") on the decisions
//     source, and "uow.rollback" spans of ROLLBACK PREPARED when it is
//     abandoned;
//   - "uow.savepoint", one per savepoint statement of a nested unit
//     (SAVEPOINT, ROLLBACK TO SAVEPOINT, RELEASE SAVEPOINT);
//   - the database driver's spans, when the driver is instrumented (with
//     github.com/XSAM/otelsql, for instance): the application's statements
//     run on a context that carries the unit's span.
//
// Joined and nested units are scopes of their root's span, not spans of
// their own; the unit span's uow.scopes lists them. A read-only unit that
// runs on the primary of a source with replicas gets a span event
// "uow.replica_fallback" (uow.source, error.type) on its span. Facts
// reported outside a unit (an outbox relay's rounds, an inbox's messages)
// are metrics only: they make no span.
//
// A retried Do, or a request re-run by the HTTP middleware in buffered mode,
// makes one "uow.unit" span per attempt and, between two attempts, a
// "uow.retry" span for the backoff. They are siblings, children of the span
// in the context Do was called with (the HTTP server's span under the
// middleware): give Do a context with a span, or the attempts are separate
// traces.
//
// A span whose operation failed has status Error, the error recorded as an
// exception event, error.type (the SQLSTATE when the error carries one, else
// the sentinel it matches, such as uow.ErrCommitUnknown or context.Canceled,
// else its Go type) and uow.sqlstate. A unit span is failed when the unit was
// aborted (its context ended), was rollback-only at Commit because something
// failed, or its COMMIT or ROLLBACK failed. A unit rolled back because the
// application asked for it (Do's callback returned an error, a 4xx response,
// uow.SetRollbackOnly) is not failed: the core does not tell the observer why
// Rollback was called, and a deliberate rollback is no failure of the unit.
//
// docs/observability.md in the repository lists every attribute and shows a
// real trace.
//
// # Metrics
//
//   - uow.unit.duration (histogram, s): root units from first use to end, by
//     uow.outcome;
//   - uow.commit.duration (histogram, s): each source's COMMIT (or, in a
//     two-phase commit, its COMMIT PREPARED; not PREPARE TRANSACTION nor the
//     decision), by uow.source and, for a failed one, error.type;
//   - uow.retries (counter, {retry}): re-runs after a retryable failure, by
//     the failed attempt's uow.sqlstate (absent when it has none);
//   - uow.rollbacks (counter, {unit}): root units rolled back, by uow.outcome
//     ("rolled back" or "rollback-only");
//   - uow.commits.partial, uow.commits.unknown and uow.commits.pending
//     (counters, {unit}): commits that were partial across sources, whose
//     outcome is unknown, or two-phase commits decided but still prepared on
//     some sources;
//   - uow.hook.errors (counter, {hook}): after-commit and after-rollback hooks
//     that failed or panicked;
//   - uow.replica.fallbacks (counter, {fallback}): read-only units run on the
//     primary of a source with replicas, by uow.source and error.type
//     (uow.ErrNoReplica, uow.ErrReplicaBehind);
//   - uow.outbox.delivered and uow.outbox.failed (counters, {message}): an
//     outbox relay's deliveries, by uow.source (the outbox table), and
//     uow.outbox.lag (gauge, s): the age of its oldest undelivered message
//     after a round;
//   - uow.inbox.messages (counter, {message}): messages an inbox handled, by
//     uow.source (the inbox table), uow.applied and, for a failure,
//     error.type.
//
// The relay and the inbox report to the Observer they are given
// (outbox.RelayConfig.Observer, outbox.InboxConfig.Observer), not to a
// manager's: give them the same one.
//
// # Cost and safety
//
// With a no-op TracerProvider (go.opentelemetry.io/otel/trace/noop) the
// observer starts no span at all and only records metrics. With any other
// provider, a unit whose span does not record (no SDK installed, or a trace
// not sampled) starts no span for its BEGIN, COMMIT and the rest, and
// attributes are computed only for spans that record. The observer never
// blocks and never panics its caller: a panic in the tracer or the meter is
// recovered and reported to otel.Handle, and End only ends spans that record,
// so it never ends a span it did not start.
package uowotel
