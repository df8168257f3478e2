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
	"time"

	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// serveBuffered runs the handler with its response held back, so that a
// retryable failure can re-run it on a fresh unit while nothing has reached
// the client. The request body is kept for replay only when there is a retry
// policy: otherwise the handler reads it as it comes.
func (c *Config) serveBuffered(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request), watch Watcher) {
	p := c.Retry
	var body []byte
	replayable := false
	base := w.Header() // the outer middlewares' headers: each run starts from them
	if p != nil {
		body, replayable = keepBody(r, c.Buffer)
		base = base.Clone() // w's own are overwritten when a run sets its status
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		var delay time.Duration
		// again says whether a failed attempt may be re-run, within the
		// policy's attempts and MaxElapsed, and picks the backoff.
		again := func() bool {
			if !replayable || attempt >= p.Attempts() {
				return false
			}
			delay = p.Delay(attempt)
			return p.MaxElapsed <= 0 || time.Since(start)+delay <= p.MaxElapsed
		}
		err, done := c.attempt(w, r, next, watch, base, body, again)
		if done {
			return
		}
		if o := c.Manager.Observer(); o != nil {
			o.Observe(r.Context(), uow.Event{Kind: uow.EventRetry, Attempt: attempt, Delay: delay, Err: err})
		}
		if p.OnRetry != nil {
			p.OnRetry(r.Context(), attempt, delay, err)
		}
		if serr := retry.Sleep(r.Context(), delay); serr != nil {
			c.giveUp(w, r, watch, fmt.Errorf("uow middleware: retry: %w (last attempt: %w)", serr, err))
			return
		}
	}
}

// giveUp answers a request whose context ended while it waited to be
// re-run: nothing was committed, so it must not get net/http's implicit 200.
func (c *Config) giveUp(w http.ResponseWriter, r *http.Request, watch Watcher, err error) {
	o := Outcome{Status: http.StatusServiceUnavailable, Replaced: true, Err: err}
	if errors.Is(err, context.DeadlineExceeded) {
		o.Status = http.StatusGatewayTimeout
	}
	c.report(r, err)
	d := decision{c: c, r: r, w: w, watch: watch}
	d.fail(o)
}

// attempt runs the handler once. It returns done=false, with the unit's
// error, when the attempt failed retryably and again allowed a re-run: then
// nothing was written to w.
func (c *Config) attempt(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request), watch Watcher, base http.Header, body []byte, again func() bool) (error, bool) {
	ctx, cancel := c.deadline(r)
	defer cancel() // after the decision, and after a streamed handler is done
	ctx, u := c.Manager.Begin(ctx, c.options(r)...)
	d := &decision{c: c, u: u, r: r, w: w, watch: watch}
	bw := &bufferWriter{d: d, w: w, header: base.Clone(), limit: c.Buffer}
	r = r.WithContext(ctx)
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	returned := false
	defer func() {
		// A panic (which goes on) or runtime.Goexit: nothing to commit.
		if !returned {
			_ = u.Rollback()
		}
	}()
	next(bw, r)
	returned = true
	if bw.streaming {
		d.decide(http.StatusOK) // already decided when streaming began
		bw.trailers()
		return nil, true
	}
	status := bw.status
	if status == 0 {
		status = http.StatusOK
	}
	cause := u.RollbackOnly() // a failed statement, before the decision clears it
	d.done = true
	o := c.Decide(u, status)
	failure := o.Err
	if !o.Replaced {
		failure = cause
	}
	if failure != nil && c.Retry != nil && c.Retry.Retryable(failure) && again() {
		return failure, false
	}
	c.report(r, o.Err)
	if o.Replaced {
		d.fail(o)
		return nil, true
	}
	bw.send(status)
	return nil, true
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
	d         *decision
	w         http.ResponseWriter
	header    http.Header // the handler's
	status    int
	buf       bytes.Buffer
	limit     int
	streaming bool
}

// Header returns the response headers of this attempt.
func (b *bufferWriter) Header() http.Header { return b.header }

// WriteHeader records the status; informational statuses go out at once.
func (b *bufferWriter) WriteHeader(code int) {
	switch {
	case code < 100 || code > 999:
		b.w.WriteHeader(code) // net/http panics, as it would without the buffer
	case b.streaming:
		if !b.d.replaced {
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
		if b.d.watch != nil {
			b.d.watch.Held(code)
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
		if b.d.replaced {
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
	case b.d.replaced:
		m, err = io.Copy(io.Discard, src)
	case ok:
		m, err = rf.ReadFrom(src)
	default:
		m, err = io.Copy(b.w, src)
	}
	return n + m, err
}

// Flush decides, sends what is buffered and streams from now on.
func (b *bufferWriter) Flush() {
	b.stream()
	if f, ok := b.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack decides (as 101) and hands the connection over.
func (b *bufferWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := b.w.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	b.streaming = true
	if b.d.decide(http.StatusSwitchingProtocols) {
		return nil, nil, ErrCommitFailed
	}
	conn, rw, err := hj.Hijack()
	if err == nil {
		b.d.out(http.StatusSwitchingProtocols)
	}
	return conn, rw, err
}

// Unwrap returns the real writer, for http.ResponseController.
func (b *bufferWriter) Unwrap() http.ResponseWriter { return b.w }

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
	if b.d.decide(b.status) {
		return
	}
	b.w.WriteHeader(b.status)
	b.d.out(b.status)
	_, _ = b.w.Write(b.buf.Bytes())
	b.buf.Reset()
}

// send writes the buffered response after a successful decision.
func (b *bufferWriter) send(status int) {
	if b.status == 0 { // nothing written: the headers as they are now
		copyHeader(b.w.Header(), b.header)
	}
	b.w.WriteHeader(status)
	b.d.out(status)
	_, _ = b.w.Write(b.buf.Bytes())
	b.trailers()
}

// trailers brings the real header map up to date with the handler's once
// the handler has returned and the header has gone: net/http ignores what
// changed since, except trailers, whose values it reads at the end.
func (b *bufferWriter) trailers() {
	if !b.d.replaced {
		maps.Copy(b.w.Header(), b.header)
	}
}
