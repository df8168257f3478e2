package httpunit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/internal/bridge"
	"github.com/uowkit/uowkit/uow"
)

// TestNewValidatesOnce checks the one validation every adapter goes
// through: each misconfiguration panics with the adapter's prefix.
func TestNewValidatesOnce(t *testing.T) {
	m := uow.New(nil)
	for _, tc := range []struct {
		m    *uow.Manager
		o    Options
		want string
	}{
		{nil, Options{}, "adapter: nil *uow.Manager"},
		{m, Options{Buffer: -1}, "adapter: negative Options.Buffer"},
		{m, Options{Timeout: -1}, "adapter: negative Options.Timeout"},
		{m, Options{RetryAfter: -1}, "adapter: negative Options.RetryAfter"},
		{m, Options{HookTimeout: -1}, "adapter: negative Options.HookTimeout"},
	} {
		assert.PanicsWithValue(t, tc.want, func() { New("adapter", tc.m, tc.o) })
	}
}

func TestDefaults(t *testing.T) {
	c := New("adapter", uow.New(nil), Options{})
	assert.Equal(t, "1", c.retryAfter)
	assert.Equal(t, 10*time.Second, c.o.HookTimeout)
	assert.NotNil(t, c.o.ErrorHandler)
	c = New("adapter", uow.New(nil), Options{RetryAfter: 1500 * time.Millisecond, HookTimeout: time.Minute})
	assert.Equal(t, "2", c.retryAfter, "whole seconds, rounded up")
	assert.Equal(t, time.Minute, c.o.HookTimeout)
}

type valueKey struct{}

// TestHooksRunOnTheirOwnContext checks the context queued hooks get: the
// request's values, not its cancellation, and a deadline HookTimeout away.
func TestHooksRunOnTheirOwnContext(t *testing.T) {
	c := New("adapter", uow.New(nil), Options{})
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), valueKey{}, "v"))
	r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	cancel() // the request is over
	type seen struct {
		value    any
		err      error
		deadline time.Time
	}
	got := make(chan seen, 1)
	var q bridge.HookQueue
	q.Add(func(ctx context.Context) {
		s := seen{value: ctx.Value(valueKey{}), err: ctx.Err()}
		s.deadline, _ = ctx.Deadline()
		got <- s
	})
	start := time.Now()
	c.runHooks(r, &q)
	s := <-got
	assert.Equal(t, "v", s.value)
	assert.NoError(t, s.err, "not the request's cancellation")
	require.False(t, s.deadline.IsZero())
	assert.WithinRange(t, s.deadline, start.Add(10*time.Second), time.Now().Add(10*time.Second))
}

// TestStreamingWriterDoesNotDecideAHijackItCannotDo: on a writer that
// cannot hijack (HTTP/2's), Hijack reports http.ErrNotSupported and leaves
// the response undecided, so the handler can still answer.
func TestStreamingWriterDoesNotDecideAHijackItCannotDo(t *testing.T) {
	for _, buffer := range []int{0, 64} {
		var asked []int // the statuses the commit policy decided on
		c := New("adapter", uow.New(nil), Options{Buffer: buffer, Commit: func(status int) bool {
			asked = append(asked, status)
			return status < 400
		}})
		rec := httptest.NewRecorder()
		c.Serve(rec, httptest.NewRequest("GET", "/", nil), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _, err := http.NewResponseController(w).Hijack()
			assert.ErrorIs(t, err, http.ErrNotSupported)
			w.WriteHeader(http.StatusTeapot)
		}), nil)
		assert.Equal(t, http.StatusTeapot, rec.Code, "buffer %d", buffer)
		assert.Equal(t, []int{http.StatusTeapot}, asked, "buffer %d: decided once, on the handler's status", buffer)
	}
}

// plainWriter is a ResponseWriter with no optional interface.
type plainWriter struct {
	h      http.Header
	status []int
}

func (p *plainWriter) Header() http.Header         { return p.h }
func (p *plainWriter) Write(b []byte) (int, error) { return len(b), nil }
func (p *plainWriter) WriteHeader(code int)        { p.status = append(p.status, code) }

// TestFlushOnAWriterThatCannotFlush: the flush still decides on, and sends,
// the 200 a flush sends; http.ResponseController reports that the streaming
// writer could not flush, while the buffered one (which always can, by
// streaming) reports nothing.
func TestFlushOnAWriterThatCannotFlush(t *testing.T) {
	for _, tc := range []struct {
		buffer int
		err    error
	}{{0, http.ErrNotSupported}, {64, nil}} {
		c := New("adapter", uow.New(nil), Options{Buffer: tc.buffer})
		w := &plainWriter{h: http.Header{}}
		var got calls
		c.Serve(w, httptest.NewRequest("GET", "/", nil), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			err := http.NewResponseController(w).Flush()
			if tc.err == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tc.err)
			}
			w.WriteHeader(http.StatusInternalServerError) // too late: the 200 went out
		}), &got)
		assert.Equal(t, http.StatusOK, w.status[0], "buffer %d", tc.buffer)
		assert.Contains(t, got, "sent 200", "buffer %d", tc.buffer)
	}
}
