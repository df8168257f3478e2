package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/pgtest"
)

// collector is a fake OTLP/HTTP endpoint that keeps what it receives.
type collector struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func (c *collector) all() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.bodies, nil)
}

// With OTEL_EXPORTER_OTLP_ENDPOINT, the service exports a server span per
// request with the unit's span inside (flushed at shutdown at the latest);
// without it, it exports nothing (every other test runs so).
func TestTracesGoToTheOTLPEndpoint(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	url := pgtest.FreshURL(t, "webapp_tracing")
	db := sqlx.MustOpen("postgres", url)
	defer db.Close()
	s := &running{t: t, done: make(chan error, 1), db: db}
	ready := make(chan net.Addr, 1)
	go func() {
		s.done <- run(config{DatabaseURL: url, Addr: "127.0.0.1:0", Grace: time.Minute, OTLP: srv.URL}, quiet, func(a net.Addr) { ready <- a })
	}()
	select {
	case a := <-ready:
		s.addr = a.String()
	case err := <-s.done:
		t.Fatalf("run: %v", err)
	}
	status, body := s.post("/teams", `{"name":"Traced","capacity":3}`)
	require.Equal(t, 201, status, body)
	s.signal(syscall.SIGTERM)
	require.NoError(t, s.stopped())

	got := col.all()
	for _, name := range []string{"webapp", "uow.unit", "uow.begin", "uow.commit", "service.name"} {
		assert.True(t, bytes.Contains(got, []byte(name)), "the export holds %q", name)
	}
}
