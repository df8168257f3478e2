package uowotel_test

import (
	"context"
	"fmt"
	"sort"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/observer/uowotel"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// The observer goes to the manager; every unit that touches a database is
// then a span, with its BEGIN and COMMIT inside. A program would install
// the SDK with an OTLP exporter (and sdktrace.WithBatcher); the example
// records spans in memory to print them.
func Example() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	db := pgtest.ExampleDB("uowotel_examples")
	defer db.Close()
	m := uow.New(db, uow.WithObserver(uowotel.New(uowotel.WithTracerProvider(tp))))

	err := m.Do(context.Background(), func(ctx context.Context) error {
		var n int
		return repo.From(ctx, db).GetContext(ctx, &n, `SELECT 1`)
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ended := spans.Ended()
	sort.Slice(ended, func(i, j int) bool { return ended[i].StartTime().Before(ended[j].StartTime()) })
	for _, s := range ended {
		fmt.Print(s.Name())
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case "uow.source", "uow.outcome", "uow.sources":
				fmt.Printf(" %s=%s", kv.Key, kv.Value.String())
			}
		}
		fmt.Println()
	}
	// Output:
	// uow.unit uow.sources=["default"] uow.outcome=committed
	// uow.begin uow.source=default
	// uow.commit uow.source=default
}
