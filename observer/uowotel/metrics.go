package uowotel

import (
	"context"
	"errors"
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
	metricHookErrors     = "uow.hook.errors"
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

// cache maps a string (a source name, a SQLSTATE) to its measure: lock-free
// reads of a map replaced on each (rare) write.
type cache struct {
	mu  sync.Mutex // serialises writers
	m   atomic.Pointer[map[string]measure]
	key attribute.Key
}

func (c *cache) get(v string) measure {
	if p := c.m.Load(); p != nil {
		if ms, ok := (*p)[v]; ok {
			return ms
		}
	}
	ms := newMeasure(c.key.String(v))
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxCached {
		return ms
	}
	next := make(map[string]measure, 1+lenOf(old))
	if old != nil {
		for k, x := range *old {
			next[k] = x
		}
	}
	next[v] = ms
	c.m.Store(&next)
	return ms
}

func lenOf(p *map[string]measure) int {
	if p == nil {
		return 0
	}
	return len(*p)
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
	hookErrors     metric.Int64Counter

	outcomes   [uow.OutcomeUnknown + 1]measure // by uow.Outcome; 0: none
	noSQLState measure
	sources    cache
	sqlstates  cache
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
	m.hookErrors = counter(meter, metricHookErrors, "{hook}",
		"After-commit and after-rollback hooks that failed or panicked.")
	for o := range m.outcomes {
		m.outcomes[o] = newMeasure(keyOutcome.String(uow.Outcome(o).String()))
	}
	m.noSQLState = newMeasure()
	m.sources.key = keySource
	m.sqlstates.key = keySQLState
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
		}
	case uow.EventCommit:
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
	{uow.ErrCommitUnknown, semconv.ErrorTypeKey.String("uow.ErrCommitUnknown")},
	{uow.ErrPartialCommit, semconv.ErrorTypeKey.String("uow.ErrPartialCommit")},
	{uow.ErrRollbackOnly, semconv.ErrorTypeKey.String("uow.ErrRollbackOnly")},
	{uow.ErrDone, semconv.ErrorTypeKey.String("uow.ErrDone")},
	{context.DeadlineExceeded, semconv.ErrorTypeKey.String("context.DeadlineExceeded")},
	{context.Canceled, semconv.ErrorTypeKey.String("context.Canceled")},
}
