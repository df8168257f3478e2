package uowotel_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/XSAM/otelsql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/internal/webtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// TestTraceTree runs one real request through the net/http middleware in
// buffered mode, with otelhttp around it and otelsql (over lib/pq) under it:
// two databases, a nested unit rolled back to its savepoint, and a
// serialization failure at the first attempt's COMMIT that re-runs the whole
// request. It checks the shape of the trace; with -v it prints the trace as
// the ASCII tree shown in docs/observability.md:
//
//	go test -run TestTraceTree -v ./observer/uowotel
func TestTraceTree(t *testing.T) {
	t.Parallel()
	o := newOtel(t)
	open := func(tag string) *sqlx.DB {
		sqldb, err := otelsql.Open("postgres", pgtest.URL(t, tag), otelsql.WithTracerProvider(o.tp),
			otelsql.WithSpanOptions(otelsql.SpanOptions{OmitConnResetSession: true, OmitConnectorConnect: true, OmitRows: true}))
		require.NoError(t, err)
		db := sqlx.NewDb(sqldb, "postgres")
		t.Cleanup(func() { db.Close() })
		return db
	}
	// The tables are made without otelsql: their statements are not part of
	// the picture.
	orders := pgtest.Table(t, pgtest.Open(t, "uowotel"), "orders", `id serial PRIMARY KEY, item text`)
	log := pgtest.Table(t, pgtest.Open(t, "uowotel_audit"), "audit", `id serial PRIMARY KEY, what text`)
	webtest.CommitConflicts(t, pgtest.Open(t, "uowotel"), orders, 1) // the first COMMIT that inserted an order fails with 40001
	shop, audit := open("uowotel"), open("uowotel_audit")

	m := uow.New(shop, uow.WithSource("audit", audit), uow.WithObserver(o.obs))
	errOutOfStock := errors.New("out of stock")
	var attempts atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		ctx := r.Context()
		if _, err := repo.From(ctx, shop).ExecContext(ctx, `INSERT INTO `+orders+` (item) VALUES ('book')`); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// An optional extra, in a savepoint: its failure does not doom the order.
		_ = m.Do(ctx, func(ctx context.Context) error {
			if _, err := repo.From(ctx, shop).ExecContext(ctx, `INSERT INTO `+orders+` (item) VALUES ('gift wrap')`); err != nil {
				return err
			}
			return errOutOfStock
		}, uow.Propagate(uow.Nested))
		if _, err := repo.From(ctx, audit).ExecContext(ctx, `INSERT INTO `+log+` (what) VALUES ('order')`); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	policy := retry.Policy{BaseDelay: 2 * time.Millisecond, MaxDelay: 10 * time.Millisecond, MaxAttempts: 3}
	h := otelhttp.NewHandler(nethttp.TransactionWithOptions(m, nethttp.Options{
		Buffer:      1 << 16,
		UnitOptions: func(*http.Request) []uow.Option { return []uow.Option{uow.Retry(policy)} },
	})(mux), "server", otelhttp.WithTracerProvider(o.tp),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/orders", nil))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Equal(t, int64(2), attempts.Load())

	attempt := `  uow.unit%s
    uow.begin default
    sql.conn.begin_tx
    sql.conn.exec
    uow.savepoint default SAVEPOINT
    sql.conn.exec
    sql.conn.exec
    uow.savepoint default ROLLBACK TO SAVEPOINT
    sql.conn.exec
    uow.savepoint default RELEASE SAVEPOINT
    sql.conn.exec
    uow.begin audit
    sql.conn.begin_tx
    sql.conn.exec
    uow.commit default%[1]s
    sql.tx.commit%[1]s
%s`
	assert.Equal(t, "POST /orders\n"+
		fmt.Sprintf(attempt, " ERROR", "    uow.rollback audit\n    sql.tx.rollback\n")+
		"  uow.retry\n"+
		fmt.Sprintf(attempt, "", "    uow.commit audit\n    sql.tx.commit\n"), o.outline())

	tree := picture(o.spans.Ended(), strings.NewReplacer(orders, "orders", log, "audit"))
	if testing.Verbose() {
		fmt.Print(tree)
	}
}

// picture renders spans as the ASCII tree of docs/observability.md: each
// span's name, its start (from the root's) and duration, and its key
// attributes; short replaces the test's table names in statements.
func picture(spans []sdktrace.ReadOnlySpan, short *strings.Replacer) string {
	var t0 time.Time
	for _, s := range spans {
		if !s.Parent().IsValid() {
			t0 = s.StartTime()
		}
	}
	return fmt.Sprintf("%-36s %7s %7s  %s\n", "span", "start", "took", "attributes") +
		render(spans, func(s sdktrace.ReadOnlySpan, indent string) string {
			return strings.TrimRight(fmt.Sprintf("%-36s %5.1fms %5.1fms  %s", indent+s.Name(),
				ms(s.StartTime().Sub(t0)), ms(s.EndTime().Sub(s.StartTime())), describe(s, short)), " ")
		})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// describe lists the attributes worth showing for s.
func describe(s sdktrace.ReadOnlySpan, short *strings.Replacer) string {
	a := attrs(s)
	var parts []string
	show := func(keys ...string) {
		for _, k := range keys {
			v, ok := a[k]
			if !ok {
				continue
			}
			val := v.String()
			switch k {
			case "db.query.text":
				val = fmt.Sprintf("%q", short.Replace(val))
			case "uow.retry.delay":
				val = strconv.FormatFloat(v.AsFloat64(), 'g', 3, 64)
			case "uow.outcome", "uow.isolation":
				val = fmt.Sprintf("%q", val)
			}
			parts = append(parts, k+"="+val)
		}
	}
	switch {
	case strings.HasPrefix(s.Name(), "uow."):
		show("uow.attempt", "uow.source", "db.operation.name", "uow.isolation", "uow.sources", "uow.scopes", "uow.outcome",
			"uow.retry.attempt", "uow.retry.delay", "uow.sqlstate")
	case strings.HasPrefix(s.Name(), "sql."):
		show("db.query.text")
	default:
		show("http.response.status_code")
	}
	if s.Status().Code == codes.Error {
		parts = append(parts, "ERROR")
	}
	return strings.Join(parts, " ")
}
