package httpunit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"

	"github.com/uowkit/uowkit/internal/bridge"
	"github.com/uowkit/uowkit/uow"
)

// serveBuffered runs the handler with its response held back. When the
// request's unit has a retry policy (bridge.RetryPolicy: the one uow's Do
// would use for a root unit with these options), uow's retry loop
// (bridge.Retry, which also reports each backoff) re-runs the handler on a fresh unit after a failure it retries, as long
// as nothing has reached the client; the request body is then read up front
// to be replayed. Otherwise the handler runs once and reads its body as it
// comes.
func (c *Config) serveBuffered(w http.ResponseWriter, r *http.Request, next http.Handler, watch Watcher) {
	opts := c.unitOptions(r)
	hooks := &bridge.HookContext{Context: r.Context()}
	hooks.Describe(r.Method, r.URL.Path, nil, r.Header.Get("X-Request-Id"))
	defer c.runHooks(r, &hooks.Queue) // after the response, whichever attempt wrote it
	rn := runner{c: c, w: w, r: r, next: next, watch: watch, opts: opts, base: w.Header(), hooks: hooks}
	p := bridge.RetryPolicy(c.m, opts)
	if p != nil {
		var replayable bool
		rn.body, replayable = keepBody(r, c.o.Buffer)
		if !replayable {
			p = nil
		}
	}
	if p == nil {
		rn.attempt(hooks, nil)
		return
	}
	rn.base = rn.base.Clone() // w's own are overwritten when an attempt sets its status
	var held *heldResponse
	attempts := 0
	err := bridge.Retry(c.m, hooks, p, func(ctx context.Context, _ int) error {
		attempts++
		var err error
		held, err = rn.attempt(ctx, p.Retryable)
		return err
	})
	switch {
	case held == nil && attempts > 0:
		// An attempt has answered.
	case held == nil:
		// The request's context ended before the first attempt.
		c.giveUp(w, r, watch, fmt.Errorf("uow middleware: request not run: %w", err))
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The request's context ended during a backoff (a retried error is
		// never a context error).
		c.giveUp(w, r, watch, err)
	default:
		// Attempts ran out, or MaxElapsed would pass: the last attempt's
		// response goes out as it was decided.
		held.write()
	}
}

// giveUp answers a request whose context ended before an attempt could run
// (during a backoff, or before the first): nothing was committed, so it
// must not get net/http's implicit 200, but 503, or 504 for a deadline.
func (c *Config) giveUp(w http.ResponseWriter, r *http.Request, watch Watcher, err error) {
	o := outcome{Status: http.StatusServiceUnavailable, Replaced: true, Err: err}
	if errors.Is(err, context.DeadlineExceeded) {
		o.Status = http.StatusGatewayTimeout
	}
	c.report(r, err)
	d := decision{c: c, r: r, w: w, watch: watch}
	d.fail(o)
}

// runner is what every attempt at a buffered request shares.
type runner struct {
	c     *Config
	w     http.ResponseWriter
	r     *http.Request
	next  http.Handler
	watch Watcher
	opts  []uow.Option
	base  http.Header         // the outer middlewares' headers: each attempt starts from them
	body  []byte              // the request body to replay, or nil
	hooks *bridge.HookContext // the request's context: hook queue and description
}

// heldResponse is a decided attempt whose response has not gone out yet.
type heldResponse struct {
	bw     *bufferWriter
	o      outcome
	status int
}

// write sends the held response: the handler's, or the error response that
// replaces it.
func (h *heldResponse) write() {
	h.bw.c.report(h.bw.r, h.o.Err)
	if h.o.Replaced {
		h.bw.fail(h.o)
		return
	}
	h.bw.send(h.status)
}

// attempt runs the handler once on a fresh unit begun on ctx, and decides
// the unit when the handler returns. When retryable is set and accepts the
// unit's failure (at COMMIT, or the statement error that made it
// rollback-only, even under the handler's own 500), and nothing has gone
// out, it holds the response back and returns it with that failure: the
// retry policy then decides between another attempt and sending it.
// Otherwise it answers the client and returns nil, nil.
func (rn *runner) attempt(ctx context.Context, retryable func(error) bool) (*heldResponse, error) {
	c, r := rn.c, rn.r
	ctx, cancel := c.deadline(ctx)
	defer cancel() // after the decision, and after a streamed handler is done
	bw := &bufferWriter{decision: decision{c: c, r: r, w: rn.w, watch: rn.watch, retryable: retryable},
		header: rn.base.Clone(), limit: c.o.Buffer}
	ctx, bw.u = c.m.Begin(ctx, rn.opts...)
	r = r.WithContext(ctx)
	rn.hooks.Request.Pattern = &r.Pattern // the route the router will match
	if rn.body != nil {
		r.Body = io.NopCloser(bytes.NewReader(rn.body))
	}
	returned := false
	defer func() {
		// A panic (which goes on) or runtime.Goexit: nothing to commit.
		if !returned {
			_ = bw.u.Rollback()
		}
	}()
	rn.next.ServeHTTP(bw, r)
	returned = true
	if bw.streaming {
		bw.decide(http.StatusOK) // already decided when streaming began
		bw.trailers()
		return nil, nil
	}
	status := bw.status
	if status == 0 {
		status = http.StatusOK
		if bw.left != 0 {
			status = bw.left
		}
	}
	cause := bw.u.RollbackOnly() // a failed statement, before the decision clears it
	bw.done = true
	h := heldResponse{bw: bw, o: c.decide(bw.u, status, retryable), status: status}
	if !h.o.Replaced {
		setConsistency(bw.header, r)
	}
	failure := h.o.Err
	if !h.o.Replaced {
		failure = cause
	}
	if retryable != nil && retryable(failure) {
		held := h
		return &held, failure
	}
	h.write()
	return nil, nil
}

// keepBody reads a request body of up to limit bytes so that it can be
// replayed. A larger body is left to be streamed once (not replayable).
func keepBody(r *http.Request, limit int) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err == nil && len(b) <= limit {
		return b, true
	}
	rest := io.Reader(r.Body)
	if err != nil {
		rest = errReader{err}
	}
	r.Body = readCloser{io.MultiReader(bytes.NewReader(b), rest), r.Body}
	return nil, false
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type readCloser struct {
	io.Reader
	io.Closer
}

// bufferWriter holds a response back until the handler returns, up to limit
// bytes; past that, or on Flush or Hijack, it decides and streams.
//
// Like net/http, it sends the headers as they were when the status was set
// (WriteHeader, or the first Write or ReadFrom): they are copied into the
// real writer's map then, and later changes count only for trailers.
type bufferWriter struct {
	decision
	header    http.Header // the handler's
	status    int
	buf       bytes.Buffer
	limit     int
	streaming bool
	left      int // the status of a response left to the caller (Leave), or 0
}

// Header returns the response headers of this attempt.
func (b *bufferWriter) Header() http.Header { return b.header }

// WriteHeader records the status; informational statuses go out at once.
func (b *bufferWriter) WriteHeader(code int) {
	switch {
	case code < 100 || code > 999:
		b.w.WriteHeader(code) // net/http panics, as it would without the buffer
	case b.streaming:
		if !b.replaced {
			b.w.WriteHeader(code)
		}
	case informational(code):
		copyHeader(b.w.Header(), b.header)
		b.w.WriteHeader(code)
	default:
		b.setStatus(code)
	}
}

// setStatus records the first final status and the headers that go with it.
func (b *bufferWriter) setStatus(code int) {
	if b.status == 0 {
		b.status = code
		copyHeader(b.w.Header(), b.header)
		if b.watch != nil {
			b.watch.Held(code)
		}
	}
}

// Write buffers p, or streams when the buffer would exceed its limit.
func (b *bufferWriter) Write(p []byte) (int, error) {
	b.setStatus(http.StatusOK)
	if !b.streaming && b.buf.Len()+len(p) > b.limit {
		b.stream()
	}
	if b.streaming {
		if b.replaced {
			return len(p), nil
		}
		return b.w.Write(p)
	}
	return b.buf.Write(p)
}

// ReadFrom buffers src up to the limit. Past it, it streams what it holds
// and copies the rest through the real writer's ReadFrom, if any (sendfile).
func (b *bufferWriter) ReadFrom(src io.Reader) (int64, error) {
	b.setStatus(http.StatusOK)
	var n int64
	if !b.streaming {
		// One byte past the room left tells a larger src from one that fits.
		m, err := b.buf.ReadFrom(io.LimitReader(src, int64(b.limit-b.buf.Len())+1))
		n = m
		if err != nil || b.buf.Len() <= b.limit {
			return n, err
		}
		b.stream()
	}
	var m int64
	var err error
	switch rf, ok := b.w.(io.ReaderFrom); {
	case b.replaced:
		m, err = io.Copy(io.Discard, src)
	case ok:
		m, err = rf.ReadFrom(src)
	default:
		m, err = io.Copy(b.w, src)
	}
	return n + m, err
}

// Flush decides, sends what is buffered and streams from now on. On a real
// writer that cannot flush, it still decides and streams.
func (b *bufferWriter) Flush() {
	b.stream()
	_ = http.NewResponseController(b.w).Flush()
}

// Hijack decides (as 101) and hands the connection over: streaming from
// now on.
func (b *bufferWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hijacker(b.w) != nil {
		b.streaming = true
	}
	return b.hijack()
}

// copyHeader makes dst a copy of src.
func copyHeader(dst, src http.Header) {
	clear(dst)
	maps.Copy(dst, src)
}

// stream decides now and sends what was buffered.
func (b *bufferWriter) stream() {
	if b.streaming {
		return
	}
	b.streaming = true
	b.setStatus(http.StatusOK)
	if b.decide(b.status) {
		return
	}
	b.w.WriteHeader(b.status)
	b.out(b.status)
	_, _ = b.w.Write(b.buf.Bytes())
	b.buf.Reset()
}

// send writes the buffered response after a successful decision.
func (b *bufferWriter) send(status int) {
	if b.status == 0 { // nothing written: the headers as they are now
		copyHeader(b.w.Header(), b.header)
		if b.left != 0 {
			return // the caller writes the response
		}
	}
	b.w.WriteHeader(status)
	b.out(status)
	_, _ = b.w.Write(b.buf.Bytes())
	b.trailers()
}

// trailers brings the real header map up to date with the handler's once
// the handler has returned and the header has gone: net/http ignores what
// changed since, except trailers, whose values it reads at the end.
func (b *bufferWriter) trailers() {
	if !b.replaced {
		maps.Copy(b.w.Header(), b.header)
	}
}
