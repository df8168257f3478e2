package uowotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// Attribute keys of uowkit's own; the semantic conventions' keys come from
// package semconv. docs/observability.md lists them all, with their values.
const (
	keySource     = attribute.Key("uow.source")
	keyIsolation  = attribute.Key("uow.isolation")
	keyReadOnly   = attribute.Key("uow.read_only")
	keyAttempt    = attribute.Key("uow.attempt")
	keySources    = attribute.Key("uow.sources")
	keyScopes     = attribute.Key("uow.scopes")
	keyOutcome    = attribute.Key("uow.outcome")
	keySQLState   = attribute.Key("uow.sqlstate")
	keyRetryNo    = attribute.Key("uow.retry.attempt")
	keyRetryDelay = attribute.Key("uow.retry.delay")
	keyReplica    = attribute.Key("uow.replica")
	keyApplied    = attribute.Key("uow.applied")
)

// eventReplicaFallback is the name of the span event a replica fallback
// adds to its unit's span.
const eventReplicaFallback = "uow.replica_fallback"

// stmtCommitPrepared is the Statement of the EventCommit of a two-phase
// commit's COMMIT PREPARED.
const stmtCommitPrepared = "COMMIT PREPARED"

// Span names, by event kind.
const (
	spanUnit      = "uow.unit"
	spanBegin     = "uow.begin"
	spanCommit    = "uow.commit"
	spanRollback  = "uow.rollback"
	spanSavepoint = "uow.savepoint"
	spanRetry     = "uow.retry"
)

// spanName returns the name of the span an event kind gets, or "" for a kind
// that is not an operation (EventHookError, EventReplicaFallback), that is
// reported outside a unit (EventRelay, EventInbox), or that this version
// does not know: those never start a span, and their End never ends one.
func spanName(k uow.EventKind) string {
	switch k {
	case uow.EventUnit:
		return spanUnit
	case uow.EventBegin:
		return spanBegin
	case uow.EventCommit:
		return spanCommit
	case uow.EventRollback:
		return spanRollback
	case uow.EventSavepoint:
		return spanSavepoint
	case uow.EventRetry:
		return spanRetry
	}
	return ""
}

var (
	internalSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	opBegin      = semconv.DBOperationName("BEGIN")
	opCommit     = semconv.DBOperationName("COMMIT")
	opRollback   = semconv.DBOperationName("ROLLBACK")
)

// observer is the uow.Observer New returns.
type observer struct {
	tracer trace.Tracer
	// tracing is false for a TracerProvider known to record nothing: Start
	// then returns its context as it is, and End touches no span.
	tracing bool
	metrics
}

// New returns a uow.Observer that reports units of work to OpenTelemetry:
// one span per root unit that touched a database, with child spans for each
// BEGIN, COMMIT, ROLLBACK and savepoint statement and a span for each retry's
// backoff, and the metrics listed in the package documentation. Without
// options it uses the global TracerProvider and MeterProvider
// (otel.GetTracerProvider, otel.GetMeterProvider), which delegate to the
// providers the program sets later.
//
// Give it to the manager:
//
//	m := uow.New(db, uow.WithObserver(uowotel.New()))
//
// The observer is safe for concurrent use; one serves any number of managers.
func New(opts ...Option) uow.Observer {
	c := config{tp: otel.GetTracerProvider(), mp: otel.GetMeterProvider()}
	for _, opt := range opts {
		opt.apply(&c)
	}
	var scope []trace.TracerOption
	var mscope []metric.MeterOption
	if v := Version(); v != "" {
		scope = append(scope, trace.WithInstrumentationVersion(v))
		mscope = append(mscope, metric.WithInstrumentationVersion(v))
	}
	o := &observer{tracer: c.tp.Tracer(ScopeName, scope...)}
	_, noop := c.tp.(tracenoop.TracerProvider)
	o.tracing = !noop
	o.metrics.init(c.mp.Meter(ScopeName, mscope...))
	return o
}

// Start starts the span of the operation e reports and returns the context
// carrying it, on which the operation runs: for EventUnit, the context every
// statement of the unit then sees, so that a database/sql tracer's spans
// (otelsql) nest under the unit's span. Attributes are computed only for a
// span that records.
func (o *observer) Start(ctx context.Context, e uow.Event) (out context.Context) {
	name := spanName(e.Kind)
	if name == "" || !o.tracing {
		return ctx
	}
	defer func() {
		if r := recover(); r != nil {
			// A span that only carries the parent's identity: End then
			// ends nothing, not the parent's span.
			out = trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(ctx))
			otel.Handle(fmt.Errorf("uowotel: Start(%v): panic: %v", e.Kind, r))
		}
	}()
	if e.Kind != uow.EventUnit && e.Kind != uow.EventRetry && !trace.SpanFromContext(ctx).IsRecording() {
		// An operation of a unit whose span records nothing (no SDK, or
		// not sampled): the SDK's samplers would not sample its span
		// either (ParentBased follows the unit, TraceIDRatioBased decides
		// by the same trace ID, AlwaysSample would have sampled the unit),
		// and no driver runs on the context returned here. Starting none
		// saves the tracer's allocations.
		return ctx
	}
	sctx, span := o.tracer.Start(ctx, name, internalSpan...)
	if span.IsRecording() {
		startAttributes(span, e)
	}
	return sctx
}

// startAttributes sets the attributes known when e starts.
func startAttributes(span trace.Span, e uow.Event) {
	switch e.Kind {
	case uow.EventUnit:
		attrs := []attribute.KeyValue{keyIsolation.String(e.Isolation.String()), keyReadOnly.Bool(e.ReadOnly)}
		if e.Attempt > 0 {
			attrs = append(attrs, keyAttempt.Int(e.Attempt))
		}
		span.SetAttributes(attrs...)
	case uow.EventBegin:
		if e.Replica != "" {
			span.SetAttributes(keySource.String(e.Source), opBegin, keyReplica.String(e.Replica))
		} else {
			span.SetAttributes(keySource.String(e.Source), opBegin)
		}
	case uow.EventCommit:
		span.SetAttributes(keySource.String(e.Source), operation(e, opCommit))
	case uow.EventRollback:
		span.SetAttributes(keySource.String(e.Source), operation(e, opRollback))
	case uow.EventSavepoint:
		span.SetAttributes(keySource.String(e.Source), semconv.DBOperationName(e.Statement))
	case uow.EventRetry:
		attrs := []attribute.KeyValue{keyRetryNo.Int(e.Attempt), keyRetryDelay.Float64(e.Delay.Seconds())}
		if e.Err != nil {
			attrs = append(attrs, errorAttributes(e.Err)...)
			span.RecordError(e.Err) // the failed attempt's error, as an event: the backoff itself did not fail
		}
		span.SetAttributes(attrs...)
	}
}

// operation returns the db.operation.name of a commit or rollback: the
// two-phase commit's step (Statement: PREPARE TRANSACTION, decision, COMMIT
// PREPARED, ROLLBACK PREPARED), else plain.
func operation(e uow.Event, plain attribute.KeyValue) attribute.KeyValue {
	if e.Statement != "" {
		return semconv.DBOperationName(e.Statement)
	}
	return plain
}

// End records e's metrics, completes its span and ends it. A fact that is
// not an operation (EventHookError, EventReplicaFallback) and a report from
// outside a unit (EventRelay, EventInbox) are recorded and end no span.
func (o *observer) End(ctx context.Context, e uow.Event) {
	defer func() {
		if r := recover(); r != nil {
			otel.Handle(fmt.Errorf("uowotel: End(%v): panic: %v", e.Kind, r))
		}
	}()
	switch e.Kind {
	case uow.EventHookError:
		o.hookErrors.Add(ctx, 1)
		return
	case uow.EventReplicaFallback:
		o.recordFallback(ctx, e)
		if o.tracing {
			// ctx is the unit's: its span, when it records, says that
			// this source was read on the primary.
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				attrs := []attribute.KeyValue{keySource.String(e.Source)}
				if e.Err != nil {
					attrs = append(attrs, fallbackType(e.Err))
				}
				span.AddEvent(eventReplicaFallback, trace.WithAttributes(attrs...))
			}
		}
		return
	case uow.EventRelay:
		o.recordRelay(ctx, e)
		return
	case uow.EventInbox:
		o.recordInbox(ctx, e)
		return
	}
	if spanName(e.Kind) == "" {
		return
	}
	o.record(ctx, e) // before End: an exemplar may point at the span
	if !o.tracing {
		return
	}
	// Ending a span that does not record is a no-op, by the API's contract:
	// skipping it also leaves alone the unit's span, found in the context
	// of an operation that started none.
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		endAttributes(ctx, span, e)
		span.End()
	}
}

// endAttributes completes the span of e, which is over.
func endAttributes(ctx context.Context, span trace.Span, e uow.Event) {
	switch e.Kind {
	case uow.EventUnit:
		attrs := []attribute.KeyValue{keySources.StringSlice(e.Sources), keyOutcome.String(e.Outcome.String())}
		if len(e.Scopes) > 0 {
			scopes := make([]string, len(e.Scopes))
			for i, p := range e.Scopes {
				scopes[i] = p.String()
			}
			attrs = append(attrs, keyScopes.StringSlice(scopes))
		}
		span.SetAttributes(attrs...)
	case uow.EventRetry:
		// e.Err is still the failed attempt's error, recorded at Start. The
		// backoff fails only when the context ends during it: Do then
		// returns without another attempt.
		if err := ctx.Err(); err != nil {
			span.SetStatus(codes.Error, "backoff interrupted: "+context.Cause(ctx).Error())
		}
		return
	}
	if e.Err != nil && !deliberate(e) {
		span.SetAttributes(errorAttributes(e.Err)...)
		span.RecordError(e.Err)
		span.SetStatus(codes.Error, e.Err.Error())
	}
}

// errorAttributes describes err: error.type (see errorType) and, when err
// carries one, uow.sqlstate.
func errorAttributes(err error) []attribute.KeyValue {
	if code, ok := retry.SQLState(err); ok {
		return []attribute.KeyValue{semconv.ErrorTypeKey.String(code), keySQLState.String(code)}
	}
	return []attribute.KeyValue{errorType(err)}
}

// deliberate reports whether e is a unit the application chose to roll
// back: Commit after SetRollbackOnly (a dry run), or Do's callback returning
// an error of the application's own (a refused request), which carries no
// SQLSTATE and is no context error. A unit rolled back by a database error
// (a serialization failure the callback passed on) is a failure.
func deliberate(e uow.Event) bool {
	if e.Kind != uow.EventUnit {
		return false
	}
	switch e.Outcome {
	case uow.OutcomeRollbackOnly:
		return errors.Is(e.Err, uow.ErrRollbackRequested)
	case uow.OutcomeRolledBack:
		_, db := retry.SQLState(e.Err)
		return !db && !errors.Is(e.Err, context.Canceled) && !errors.Is(e.Err, context.DeadlineExceeded)
	}
	return false
}
