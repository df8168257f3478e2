package uowotel_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/observer/uowotel"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// raise40001 makes the server raise a real serialization_failure.
const raise40001 = `DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`

// fast retries quickly: the tests are about what is reported, not timing.
var fast = retry.Policy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxAttempts: 5}

// otelEnv is an SDK tracer and meter with in-memory exporters, and the
// observer on them.
type otelEnv struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	obs    uow.Observer
}

func newOtel(t testing.TB) *otelEnv {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return &otelEnv{spans: spans, tp: tp, reader: reader,
		obs: uowotel.New(uowotel.WithTracerProvider(tp), uowotel.WithMeterProvider(mp))}
}

// parent starts the span the test's work runs under, as an HTTP server's
// span would be: every span of the test is in its tree.
func (o *otelEnv) parent(name string) (context.Context, trace.Span) {
	return o.tp.Tracer("test").Start(context.Background(), name)
}

// outline renders the ended spans as an indented tree, children in the
// order they started: each line is the span's name, its source, its
// statement (a savepoint's, a two-phase commit's step), its replica, and
// ERROR for a span with status Error.
func (o *otelEnv) outline() string {
	return render(o.spans.Ended(), func(s sdktrace.ReadOnlySpan, indent string) string {
		line := indent + s.Name()
		a := attrs(s)
		if v, ok := a["uow.source"]; ok {
			line += " " + v.AsString()
		}
		switch op := a["db.operation.name"].AsString(); {
		case s.Name() == "uow.savepoint",
			s.Name() == "uow.commit" && op != "COMMIT",
			s.Name() == "uow.rollback" && op != "ROLLBACK":
			line += " " + op
		}
		if v, ok := a["uow.replica"]; ok {
			line += " on " + v.AsString()
		}
		if s.Status().Code == codes.Error {
			line += " ERROR"
		}
		return line
	})
}

// render draws spans as a tree, one line per span made by label from the
// span and its indentation (two spaces per level); roots and siblings in the
// order they started.
func render(spans []sdktrace.ReadOnlySpan, label func(s sdktrace.ReadOnlySpan, indent string) string) string {
	byID := map[trace.SpanID]bool{}
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = true
	}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if p := s.Parent().SpanID(); s.Parent().IsValid() && byID[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(level int, ss []sdktrace.ReadOnlySpan)
	walk = func(level int, ss []sdktrace.ReadOnlySpan) {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].StartTime().Before(ss[j].StartTime()) })
		for _, s := range ss {
			fmt.Fprintln(&b, label(s, strings.Repeat("  ", level)))
			walk(level+1, children[s.SpanContext().SpanID()])
		}
	}
	walk(0, roots)
	return b.String()
}

// named returns the ended spans called name, in the order they started.
func (o *otelEnv) named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range o.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartTime().Before(out[j].StartTime()) })
	return out
}

// one returns the only ended span called name.
func (o *otelEnv) one(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	ss := o.named(name)
	require.Len(t, ss, 1, "spans named %s:\n%s", name, o.outline())
	return ss[0]
}

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// attrsOf returns a span's attributes by key, as their Go values: string,
// bool, int64, float64, []string.
func attrsOf(s sdktrace.ReadOnlySpan) map[string]any {
	m := map[string]any{}
	for k, v := range attrs(s) {
		m[k] = v.AsInterface()
	}
	return m
}

// exceptions returns the messages of a span's exception events.
func exceptions(s sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, e := range s.Events() {
		if e.Name != "exception" {
			continue
		}
		for _, kv := range e.Attributes {
			if kv.Key == "exception.message" {
				out = append(out, kv.Value.AsString())
			}
		}
	}
	return out
}

// points collects the metrics: for each counter its value, for each
// histogram its count, for each gauge its value in milliseconds, keyed by
// "name{k=v,...}" (attributes sorted; empty braces omitted).
func (o *otelEnv) points(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, o.reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, uowotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] += int64(p.Count)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = int64(math.Round(p.Value * 1000))
				}
			default:
				t.Fatalf("metric %s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

func key(name string, set attribute.Set) string {
	if set.Len() == 0 {
		return name
	}
	var kvs []string
	for _, kv := range set.ToSlice() {
		kvs = append(kvs, string(kv.Key)+"="+kv.Value.String())
	}
	slices.Sort(kvs)
	return name + "{" + strings.Join(kvs, ",") + "}"
}

// newTable creates a table of items in db, dropped after the test.
func newTable(t *testing.T, db *sqlx.DB) string {
	t.Helper()
	return pgtest.Table(t, db, "items", `id serial PRIMARY KEY, v text`)
}

// insert adds a row to table through the unit active in ctx.
func insert(ctx context.Context, db *sqlx.DB, table, v string) error {
	_, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO `+table+` (v) VALUES ($1)`, v)
	return err
}
