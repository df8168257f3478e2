package uowotel_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/observer/uowotel"
	"github.com/uowkit/uowkit/uow"
)

// With a no-op TracerProvider the observer starts no span and ends none:
// not even the caller's, which a careless End would find in its context.
// Metrics are still recorded.
func TestNoopTracerProviderLeavesTheCallersSpanAlone(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	obs := uowotel.New(uowotel.WithTracerProvider(tracenoop.NewTracerProvider()), uowotel.WithMeterProvider(mp))
	db := pgtest.Open(t, "uowotel")
	tbl := newTable(t, db)
	m := uow.New(db, uow.WithObserver(obs))

	ctx, req := o.parent("request")
	require.NoError(t, m.Do(ctx, func(ctx context.Context) error {
		assert.Equal(t, req.SpanContext(), trace.SpanContextFromContext(ctx), "statements still see the caller's span")
		return insert(ctx, db, tbl, "a")
	}))
	assert.Empty(t, o.spans.Ended(), "the caller's span is still open")
	req.End()
	assert.Len(t, o.spans.Ended(), 1)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	require.Len(t, rm.ScopeMetrics, 1)
	assert.Len(t, rm.ScopeMetrics[0].Metrics, 2, "unit and commit durations")
}

// errs collects what reaches OpenTelemetry's global error handler.
var errs struct {
	once sync.Once
	mu   sync.Mutex
	got  []string
}

func otelErrors() []string {
	errs.once.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			errs.mu.Lock()
			errs.got = append(errs.got, err.Error())
			errs.mu.Unlock()
		}))
	})
	errs.mu.Lock()
	defer errs.mu.Unlock()
	return append([]string(nil), errs.got...)
}

// panicky is a tracer whose BEGIN spans panic at Start and whose other spans
// panic at End.
type panicky struct{ tracenoop.TracerProvider }

func (panicky) Tracer(string, ...trace.TracerOption) trace.Tracer { return panickyTracer{} }

type panickyTracer struct{ tracenoop.Tracer }

func (panickyTracer) Start(ctx context.Context, name string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	if name == "uow.begin" {
		panic("boom at start")
	}
	return trace.ContextWithSpan(ctx, panickySpan{}), panickySpan{}
}

type panickySpan struct{ tracenoop.Span }

func (panickySpan) IsRecording() bool { return true }

func (panickySpan) End(...trace.SpanEndOption) { panic("boom at end") }

// A tracer that panics never panics the unit: the panic goes to
// OpenTelemetry's error handler, and the unit commits. The BEGIN whose Start
// panicked ends no span at End: not the unit's, its parent.
func TestAPanickingTracerDoesNotStopTheUnit(t *testing.T) {
	before := len(otelErrors())
	db := pgtest.Open(t, "uowotel")
	tbl := newTable(t, db)
	m := uow.New(db, uow.WithObserver(uowotel.New(uowotel.WithTracerProvider(panicky{}))))

	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error { return insert(ctx, db, tbl, "a") }))
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM `+tbl))
	assert.Equal(t, 1, n)
	assert.Equal(t, []string{
		"uowotel: Start(begin): panic: boom at start",
		"uowotel: End(commit): panic: boom at end",
		"uowotel: End(unit): panic: boom at end",
	}, otelErrors()[before:])
}

// A unit whose trace is not sampled records no span, and starts none for its
// BEGIN and COMMIT; its metrics are recorded all the same.
func TestUnsampledUnitRecordsNoSpan(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.NeverSample()))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	db := pgtest.Open(t, "uowotel")
	tbl := newTable(t, db)
	m := uow.New(db, uow.WithObserver(uowotel.New(uowotel.WithTracerProvider(tp), uowotel.WithMeterProvider(mp))))

	require.NoError(t, m.Do(context.Background(), func(ctx context.Context) error {
		err := insert(ctx, db, tbl, "a")
		assert.True(t, trace.SpanContextFromContext(ctx).IsValid(), "the unit's span context still propagates")
		return err
	}))
	assert.Empty(t, spans.Started())
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	require.Len(t, rm.ScopeMetrics, 1)
	assert.Len(t, rm.ScopeMetrics[0].Metrics, 2, "unit and commit durations")
}
