package uowotel

import (
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// config is what the options set.
type config struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

// Option configures New.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTracerProvider makes the observer start its spans with tp's tracer
// instead of the global provider's. A nil tp keeps the global one.
//
// Spans end synchronously in the goroutine that runs the unit, so tp should
// export through a batching span processor (sdktrace.WithBatcher), not a
// synchronous one that would put the exporter's round trip on every unit's
// path.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	})
}

// WithMeterProvider makes the observer record its metrics with mp's meter
// instead of the global provider's. A nil mp keeps the global one.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) {
		if mp != nil {
			c.mp = mp
		}
	})
}
