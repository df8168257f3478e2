package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/uowkit/uowkit/observer/uowotel"
	"github.com/uowkit/uowkit/uow"
)

// tracing is the service's OpenTelemetry setup: with an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT), every request is a server span and every
// unit of work a span inside it, with its BEGIN, COMMIT, ROLLBACK and
// savepoints, exported over OTLP/HTTP in batches; without one, nothing is
// set up and nothing is paid.
type tracing struct {
	// observer reports units as spans, or is nil.
	observer uow.Observer
	// wrap makes each request a server span.
	wrap func(http.Handler) http.Handler
	// shutdown flushes the spans not yet exported.
	shutdown func(context.Context) error
}

// setupTracing sets up tracing to endpoint, or nothing when it is empty.
// The exporter's other settings (headers, timeout, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES for the resource) come from the standard
// OTEL_* environment variables.
func setupTracing(ctx context.Context, endpoint string, log *slog.Logger) (tracing, error) {
	off := tracing{wrap: func(h http.Handler) http.Handler { return h }, shutdown: func(context.Context) error { return nil }}
	if endpoint == "" {
		log.Info("tracing off: no OTEL_EXPORTER_OTLP_ENDPOINT")
		return off, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint+"/v1/traces"))
	if err != nil {
		return off, err
	}
	res := resource.Default() // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
	if os.Getenv("OTEL_SERVICE_NAME") == "" {
		if res, err = resource.Merge(res, resource.NewSchemaless(attribute.String("service.name", "webapp"))); err != nil {
			return off, err
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("tracing to OTLP", slog.String("endpoint", endpoint))
	return tracing{
		observer: uowotel.New(uowotel.WithTracerProvider(tp)),
		wrap: func(h http.Handler) http.Handler {
			return otelhttp.NewHandler(h, "webapp", otelhttp.WithTracerProvider(tp))
		},
		shutdown: tp.Shutdown,
	}, nil
}
