package uowotel

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// Metric names; docs/observability.md describes each.
const (
	metricUnitDuration   = "uow.unit.duration"
	metricCommitDuration = "uow.commit.duration"
	metricRetries        = "uow.retries"
	metricRollbacks      = "uow.rollbacks"
	metricPartial        = "uow.commits.partial"
	metricUnknown        = "uow.commits.unknown"
	metricPending        = "uow.commits.pending"
	metricHookErrors     = "uow.hook.errors"
	metricFallbacks      = "uow.replica.fallbacks"
	metricDelivered      = "uow.outbox.delivered"
	metricFailed         = "uow.outbox.failed"
	metricLag            = "uow.outbox.lag"
	metricInbox          = "uow.inbox.messages"
)

// durationBuckets are the boundaries, in seconds, the semantic conventions
// advise for database operation durations (db.client.operation.duration).
var durationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// maxCached bounds each cache of attribute sets: source names and SQLSTATEs
// are few, but nothing outside this package promises it.
const maxCached = 256

// measure is one attribute set, ready to pass to Record and Add without
// building it (or allocating) on every unit.
type measure struct {
	rec []metric.RecordOption
	add []metric.AddOption
}

func newMeasure(attrs ...attribute.KeyValue) measure {
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	return measure{rec: []metric.RecordOption{opt}, add: []metric.AddOption{opt}}
}

// cache maps a key (a source name, a SQLSTATE, a source and a reason) to
// its measure: lock-free reads of a map replaced on each (rare) write.
type cache[K comparable] struct {
	mu    sync.Mutex // serialises writers
	m     atomic.Pointer[map[K]measure]
	attrs func(K) []attribute.KeyValue // the attributes of a key
}

func (c *cache[K]) get(k K) measure {
	if p := c.m.Load(); p != nil {
		if ms, ok := (*p)[k]; ok {
			return ms
		}
	}
	ms := newMeasure(c.attrs(k)...)
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxCached {
		return ms
	}
	next := make(map[K]measure, 1+lenOf(old))
	if old != nil {
		maps.Copy(next, *old)
	}
	next[k] = ms
	c.m.Store(&next)
	return ms
}

func lenOf[K comparable](p *map[K]measure) int {
	if p == nil {
		return 0
	}
	return len(*p)
}

// stringCache returns the attributes of a cache whose keys are the values
// of key.
func stringCache(key attribute.Key) func(string) []attribute.KeyValue {
	return func(v string) []attribute.KeyValue { return []attribute.KeyValue{key.String(v)} }
}

// fallbackKey is a replica fallback's source and why (fallbackReasons).
type fallbackKey struct {
	source string
	reason int
}

// inboxKey is an inbox message's table and whether it was applied.
type inboxKey struct {
	source  string
	applied bool
}

// metrics holds the instruments and the attribute sets they are recorded
// with.
type metrics struct {
	unitDuration   metric.Float64Histogram
	commitDuration metric.Float64Histogram
	retries        metric.Int64Counter
	rollbacks      metric.Int64Counter
	partial        metric.Int64Counter
	unknown        metric.Int64Counter
	pending        metric.Int64Counter
	hookErrors     metric.Int64Counter
	fallbacks      metric.Int64Counter
	delivered      metric.Int64Counter
	failed         metric.Int64Counter
	lag            metric.Float64Gauge
	inbox          metric.Int64Counter

	outcomes   [uow.OutcomePending + 1]measure // by uow.Outcome; 0: none
	noSQLState measure
	sources    cache[string]
	sqlstates  cache[string]
	fallback   cache[fallbackKey]
	inboxes    cache[inboxKey]
}

// init creates the instruments on meter. An instrument the meter refuses is
// reported to otel.Handle and replaced by a no-op one: metrics never stop a
// unit.
func (m *metrics) init(meter metric.Meter) {
	m.unitDuration = histogram(meter, metricUnitDuration,
		"Duration of root units of work, from first use to end, by outcome.")
	m.commitDuration = histogram(meter, metricCommitDuration,
		"Duration of one source's COMMIT.")
	m.retries = counter(meter, metricRetries, "{retry}",
		"Units of work re-run after a retryable failure, by the failed attempt's SQLSTATE.")
	m.rollbacks = counter(meter, metricRollbacks, "{unit}",
		"Root units of work rolled back, by outcome: rolled back (asked for, or failed) or rollback-only (Commit refused).")
	m.partial = counter(meter, metricPartial, "{unit}",
		"Root units of work whose commit was partial: some sources committed, then one failed.")
	m.unknown = counter(meter, metricUnknown, "{unit}",
		"Root units of work whose COMMIT outcome is unknown (connection lost or interrupted during COMMIT).")
	m.pending = counter(meter, metricPending, "{unit}",
		"Root units of work whose two-phase commit is decided but pending on some sources (still prepared until recovery commits them).")
	m.hookErrors = counter(meter, metricHookErrors, "{hook}",
		"After-commit and after-rollback hooks that failed or panicked.")
	m.fallbacks = counter(meter, metricFallbacks, "{fallback}",
		"Read-only units that ran on the primary of a source with replicas, by source and error.type (why).")
	m.delivered = counter(meter, metricDelivered, "{message}",
		"Outbox messages a relay delivered, by source (the outbox table).")
	m.failed = counter(meter, metricFailed, "{message}",
		"Outbox deliveries that failed, by source (the outbox table).")
	m.lag = gauge(meter, metricLag,
		"Age of the oldest undelivered outbox message after a relay round (0 when none is left), by source (the outbox table).")
	m.inbox = counter(meter, metricInbox, "{message}",
		"Messages an inbox handled, by source (the inbox table), uow.applied (false for a duplicate) and, for a failure, error.type.")
	for o := range m.outcomes {
		m.outcomes[o] = newMeasure(keyOutcome.String(uow.Outcome(o).String()))
	}
	m.noSQLState = newMeasure()
	m.sources.attrs = stringCache(keySource)
	m.sqlstates.attrs = stringCache(keySQLState)
	m.fallback.attrs = func(k fallbackKey) []attribute.KeyValue {
		return []attribute.KeyValue{keySource.String(k.source), fallbackReasons[k.reason].kv}
	}
	m.inboxes.attrs = func(k inboxKey) []attribute.KeyValue {
		return []attribute.KeyValue{keySource.String(k.source), keyApplied.Bool(k.applied)}
	}
}

func histogram(meter metric.Meter, name, desc string) metric.Float64Histogram {
	h, err := meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		otel.Handle(err)
		h, _ = metricnoop.Meter{}.Float64Histogram(name)
	}
	return h
}

func gauge(meter metric.Meter, name, desc string) metric.Float64Gauge {
	g, err := meter.Float64Gauge(name, metric.WithUnit("s"), metric.WithDescription(desc))
	if err != nil {
		otel.Handle(err)
		g, _ = metricnoop.Meter{}.Float64Gauge(name)
	}
	return g
}

func counter(meter metric.Meter, name, unit, desc string) metric.Int64Counter {
	c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	if err != nil {
		otel.Handle(err)
		c, _ = metricnoop.Meter{}.Int64Counter(name)
	}
	return c
}

// outcome returns the measure of outcome o.
func (m *metrics) outcome(o uow.Outcome) measure {
	if int(o) >= len(m.outcomes) {
		return m.outcomes[0]
	}
	return m.outcomes[o]
}

// record records the metrics of e, which is over.
func (m *metrics) record(ctx context.Context, e uow.Event) {
	switch e.Kind {
	case uow.EventUnit:
		ms := m.outcome(e.Outcome)
		m.unitDuration.Record(ctx, e.Duration.Seconds(), ms.rec...)
		switch e.Outcome {
		case uow.OutcomeRolledBack, uow.OutcomeRollbackOnly:
			m.rollbacks.Add(ctx, 1, ms.add...)
		case uow.OutcomePartial:
			m.partial.Add(ctx, 1)
		case uow.OutcomeUnknown:
			m.unknown.Add(ctx, 1)
		case uow.OutcomePending:
			m.pending.Add(ctx, 1)
		}
	case uow.EventCommit:
		if !measuredCommit(e.Statement) {
			return
		}
		if e.Err == nil {
			m.commitDuration.Record(ctx, e.Duration.Seconds(), m.sources.get(e.Source).rec...)
			return
		}
		attrs := append([]attribute.KeyValue{keySource.String(e.Source)}, errorType(e.Err))
		m.commitDuration.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(attrs...))
	case uow.EventRetry:
		ms := m.noSQLState
		if code, ok := retry.SQLState(e.Err); ok {
			ms = m.sqlstates.get(code)
		}
		m.retries.Add(ctx, 1, ms.add...)
	}
}

// measuredCommit reports whether uow.commit.duration measures an
// EventCommit with statement stmt: a plain COMMIT ("") and a two-phase
// commit's COMMIT PREPARED, the steps that make a source's work visible;
// not PREPARE TRANSACTION or the decision, which only have spans.
func measuredCommit(stmt string) bool {
	return stmt == "" || stmt == stmtCommitPrepared
}

// recordFallback counts e, an EventReplicaFallback.
func (m *metrics) recordFallback(ctx context.Context, e uow.Event) {
	if i := fallbackReason(e.Err); i >= 0 {
		m.fallbacks.Add(ctx, 1, m.fallback.get(fallbackKey{e.Source, i}).add...)
		return
	}
	attrs := []attribute.KeyValue{keySource.String(e.Source)}
	if e.Err != nil {
		attrs = append(attrs, errorType(e.Err))
	}
	m.fallbacks.Add(ctx, 1, metric.WithAttributes(attrs...))
}

// recordRelay records e, an EventRelay. The lag is recorded only when the
// round measured it: always when the round succeeded (0 when nothing is left
// undelivered); when it failed, only a positive lag says it was measured.
func (m *metrics) recordRelay(ctx context.Context, e uow.Event) {
	ms := m.sources.get(e.Source)
	m.delivered.Add(ctx, int64(e.Count), ms.add...)
	m.failed.Add(ctx, int64(e.Failed), ms.add...)
	if e.Err == nil || e.Lag > 0 {
		m.lag.Record(ctx, e.Lag.Seconds(), ms.rec...)
	}
}

// recordInbox counts e, an EventInbox.
func (m *metrics) recordInbox(ctx context.Context, e uow.Event) {
	applied := e.Count > 0
	if e.Err == nil {
		m.inbox.Add(ctx, 1, m.inboxes.get(inboxKey{e.Source, applied}).add...)
		return
	}
	m.inbox.Add(ctx, 1, metric.WithAttributes(keySource.String(e.Source), keyApplied.Bool(applied), errorType(e.Err)))
}

// fallbackReason returns the index in fallbackReasons of the reason err
// gives for a replica fallback, or -1 for another error (the WAL position
// after a COMMIT could not be read).
func fallbackReason(err error) int {
	for i, r := range fallbackReasons {
		if errors.Is(err, r.err) {
			return i
		}
	}
	return -1
}

// fallbackReasons are the reasons a read-only unit runs on the primary, as
// error.type names them: before a SQLSTATE or a context error the
// underlying failure carries (errorType's order), since the reason is what
// a fallback is counted by.
var fallbackReasons = []struct {
	err error
	kv  attribute.KeyValue
}{
	{uow.ErrReplicaBehind, semconv.ErrorTypeKey.String("uow.ErrReplicaBehind")},
	{uow.ErrNoReplica, semconv.ErrorTypeKey.String("uow.ErrNoReplica")},
}

// fallbackType is the error.type of a replica fallback's err.
func fallbackType(err error) attribute.KeyValue {
	if i := fallbackReason(err); i >= 0 {
		return fallbackReasons[i].kv
	}
	return errorType(err)
}

// errorType is the error.type attribute of err: its SQLSTATE, as the
// database semantic conventions ask; else the context's or uowkit's sentinel
// it matches, so that the value says what happened; else its Go type.
func errorType(err error) attribute.KeyValue {
	if code, ok := retry.SQLState(err); ok {
		return semconv.ErrorTypeKey.String(code)
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.kv
		}
	}
	return semconv.ErrorType(err)
}

// sentinels are the errors errorType names, most specific first.
var sentinels = []struct {
	err error
	kv  attribute.KeyValue
}{
	{uow.ErrCommitPending, semconv.ErrorTypeKey.String("uow.ErrCommitPending")},
	{uow.ErrCommitUnknown, semconv.ErrorTypeKey.String("uow.ErrCommitUnknown")},
	{uow.ErrPartialCommit, semconv.ErrorTypeKey.String("uow.ErrPartialCommit")},
	{uow.ErrRollbackOnly, semconv.ErrorTypeKey.String("uow.ErrRollbackOnly")},
	{uow.ErrDone, semconv.ErrorTypeKey.String("uow.ErrDone")},
	{uow.ErrReplicaBehind, semconv.ErrorTypeKey.String("uow.ErrReplicaBehind")},
	{uow.ErrNoReplica, semconv.ErrorTypeKey.String("uow.ErrNoReplica")},
	{context.DeadlineExceeded, semconv.ErrorTypeKey.String("context.DeadlineExceeded")},
	{context.Canceled, semconv.ErrorTypeKey.String("context.Canceled")},
}
