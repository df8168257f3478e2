package httpunit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
func (c *Config) serveBuffered(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request)) {
	p := c.Retry
	var body []byte
	replayable := false
	if p != nil {
		body, replayable = keepBody(r, c.Buffer)
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
		err, done := c.attempt(w, r, next, body, again)
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
			c.giveUp(w, r, fmt.Errorf("uow middleware: retry: %w (last attempt: %w)", serr, err))
			return
		}
	}
}

// giveUp answers a request whose context ended while it waited to be
// re-run: nothing was committed, so it must not get net/http's implicit 200.
func (c *Config) giveUp(w http.ResponseWriter, r *http.Request, err error) {
	o := Outcome{Status: http.StatusServiceUnavailable, Replaced: true, Err: err}
	if errors.Is(err, context.DeadlineExceeded) {
		o.Status = http.StatusGatewayTimeout
	}
	c.report(r, err)
	c.WriteFailure(w, o)
}

// attempt runs the handler once. It returns done=false, with the unit's
// error, when the attempt failed retryably and again allowed a re-run: then
// nothing was written to w.
func (c *Config) attempt(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request), body []byte, again func() bool) (error, bool) {
	ctx, u := c.Manager.Begin(r.Context(), c.options(r)...)
	d := &decision{c: c, u: u, r: r, w: w}
	bw := &bufferWriter{d: d, w: w, header: w.Header().Clone(), limit: c.Buffer}
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
		c.WriteFailure(w, o)
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
type bufferWriter struct {
	d         *decision
	w         http.ResponseWriter
	header    http.Header
	status    int
	buf       bytes.Buffer
	limit     int
	streaming bool
}

// Header returns the response headers of this attempt.
func (b *bufferWriter) Header() http.Header {
	if b.streaming {
		return b.w.Header()
	}
	return b.header
}

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
		b.copyHeader()
		b.w.WriteHeader(code)
	case b.status == 0:
		b.status = code
	}
}

// Write buffers p, or streams when the buffer would exceed its limit.
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
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
	return hj.Hijack()
}

// Unwrap returns the real writer, for http.ResponseController.
func (b *bufferWriter) Unwrap() http.ResponseWriter { return b.w }

func (b *bufferWriter) copyHeader() {
	h := b.w.Header()
	clear(h)
	for k, v := range b.header {
		h[k] = v
	}
}

// stream decides now and sends what was buffered.
func (b *bufferWriter) stream() {
	if b.streaming {
		return
	}
	b.streaming = true
	status := b.status
	if status == 0 {
		status = http.StatusOK
	}
	b.copyHeader()
	if b.d.decide(status) {
		return
	}
	b.w.WriteHeader(status)
	_, _ = b.w.Write(b.buf.Bytes())
	b.buf.Reset()
}

// send writes the buffered response after a successful decision.
func (b *bufferWriter) send(status int) {
	b.copyHeader()
	b.w.WriteHeader(status)
	_, _ = b.w.Write(b.buf.Bytes())
}
