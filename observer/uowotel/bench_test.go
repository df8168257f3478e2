package uowotel_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jmoiron/sqlx"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/uowkit/uowkit/internal/nopdriver"
	"github.com/uowkit/uowkit/observer/uowotel"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// BenchmarkDoInsert is the cost of the observer on a one-INSERT Do, on a
// driver that does nothing (so that only uowkit and OpenTelemetry are
// measured): without an observer; with an observer that does nothing (what
// the core itself spends on observation); with no-op providers; with the global
// providers left unset (what New() gives a program that configured no SDK);
// with the SDK, recording (a batching span processor into an in-memory
// exporter, metrics aggregated for a manual reader); and with the SDK
// sampling every trace out.
//
//	go test -run '^$' -bench DoInsert -count 5 ./observer/uowotel
func BenchmarkDoInsert(b *testing.B) {
	db := sqlx.NewDb(sql.OpenDB(nopdriver.Connector{}), "postgres")
	b.Cleanup(func() { _ = db.Close() })
	memory := tracetest.NewInMemoryExporter()
	sdk := func(opts ...sdktrace.TracerProviderOption) []uowotel.Option {
		tp := sdktrace.NewTracerProvider(opts...)
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		return []uowotel.Option{uowotel.WithTracerProvider(tp), uowotel.WithMeterProvider(mp)}
	}
	for _, c := range []struct {
		name string
		opts []uow.ManagerOption
	}{
		{"no observer", nil},
		{"uow.ObserverFunc doing nothing", []uow.ManagerOption{uow.WithObserver(uow.ObserverFunc(func(context.Context, uow.Event) {}))}},
		{"otel no-op", []uow.ManagerOption{uow.WithObserver(uowotel.New(
			uowotel.WithTracerProvider(tracenoop.NewTracerProvider()),
			uowotel.WithMeterProvider(metricnoop.NewMeterProvider())))}},
		{"otel global unset", []uow.ManagerOption{uow.WithObserver(uowotel.New())}},
		{"otel SDK", []uow.ManagerOption{uow.WithObserver(uowotel.New(sdk(sdktrace.WithBatcher(memory))...))}},
		{"otel SDK never sampled", []uow.ManagerOption{uow.WithObserver(uowotel.New(
			sdk(sdktrace.WithBatcher(memory), sdktrace.WithSampler(sdktrace.NeverSample()))...))}},
	} {
		m := uow.New(db, c.opts...)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			n := 0
			for b.Loop() {
				err := m.Do(ctx, func(ctx context.Context) error {
					_, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO t (v) VALUES ($1)`, n)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				if n++; n%4096 == 0 {
					memory.Reset() // keep the exporter's memory bounded
				}
			}
		})
	}
}
