package httpunit

import (
	"bufio"
	"io"
	"net"
	"net/http"

	"github.com/uowkit/uowkit/internal/bridge"
	"github.com/uowkit/uowkit/uow"
)

// Watcher is told what becomes of a response's status, for an adapter that
// keeps its framework's view of the response true to the client's (Echo's
// Response.Status and Committed).
type Watcher interface {
	// Held is called when the handler fixes the status of a buffered
	// response (WriteHeader, or the implicit 200 of a Write, ReadFrom or
	// Flush), before anything has gone out.
	Held(status int)
	// Sent is called once, with the first final status that goes to the
	// client: the handler's (the implicit 200 of a Write, ReadFrom or Flush
	// included; 101 for a hijack) or the error status that replaced it. It
	// is not called for a streaming handler that wrote nothing: net/http,
	// or a middleware further out, answers after the middleware.
	Sent(status int)
}

// Serve runs next for one request inside a lazy unit and decides the unit's
// fate once, when the response status becomes known. next receives the
// wrapped writer and the request carrying the unit. watch, if not nil, is
// told of the status. The units' after-commit and after-rollback hooks run
// once the response is complete, on a goroutine of their own (see
// runHooks).
func (c *Config) Serve(w http.ResponseWriter, r *http.Request, next http.Handler, watch Watcher) {
	c.ServeIn(nil, w, r, next, watch)
}

// Stream is the state of one request in streaming mode, for an adapter to
// embed in a per-request value it allocates anyway (and pass to ServeIn),
// which spares the request an allocation. A Stream serves one request.
type Stream struct {
	w streamWriter
}

// ServeIn is Serve with the streaming state in st (nil: a new one).
func (c *Config) ServeIn(st *Stream, w http.ResponseWriter, r *http.Request, next http.Handler, watch Watcher) {
	if c.o.Consistency {
		cons, err := uow.ParseConsistency(r.Header.Get(ConsistencyHeader))
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, "invalid "+ConsistencyHeader+" header: "+err.Error()+"\n")
			d := decision{c: c, r: r, w: w, watch: watch}
			d.out(http.StatusBadRequest)
			return
		}
		r = r.WithContext(uow.WithConsistency(r.Context(), cons))
	}
	if c.o.Buffer > 0 {
		c.serveBuffered(w, r, next, watch)
		return
	}
	if st == nil {
		st = new(Stream)
	}
	// One allocation holds the writer, the decision and the hook queue.
	s := &st.w
	s.decision = decision{c: c, r: r, w: w, watch: watch}
	s.hooks.Context = r.Context()
	ctx, cancel := c.deadline(&s.hooks)
	defer cancel() // after finish: the unit is decided, not aborted
	ctx, s.u = c.m.Begin(ctx, c.unitOptions(r)...)
	defer s.finish() // rolls back on panic (which goes on) and decides a silent handler
	r2 := r.WithContext(ctx)
	s.hooks.Describe(r.Method, r.URL.Path, &r2.Pattern, r.Header.Get("X-Request-Id"))
	next.ServeHTTP(s, r2)
	s.returned = true
}

// decision finishes one unit once. A ResponseWriter is not used
// concurrently, so it needs no lock.
type decision struct {
	c     *Config
	u     *uow.Unit
	r     *http.Request
	w     http.ResponseWriter // the real writer
	watch Watcher             // or nil
	// retryable classifies a failed commit as worth a 503 (nil:
	// retry.Retryable): the request's retry policy in buffered mode.
	retryable func(error) bool
	done      bool
	replaced  bool
	sent      bool // a final status has gone to w
}

// out reports the first final status that goes to the real writer; net/http
// ignores any later one.
func (d *decision) out(status int) {
	if !d.sent {
		d.sent = true
		if d.watch != nil {
			d.watch.Sent(status)
		}
	}
}

// fail writes the response that replaces the handler's.
func (d *decision) fail(o outcome) {
	d.c.writeFailure(d.w, d.r, o)
	d.out(o.Status)
}

// decide finishes the unit for status, once, and reports whether the
// handler's response must be swallowed (the commit failed and an error
// response was written instead).
func (d *decision) decide(status int) bool {
	if d.done {
		return d.replaced
	}
	d.done = true
	o := d.c.decide(d.u, status, d.retryable)
	d.c.report(d.r, o.Err)
	if !o.Replaced {
		setConsistency(d.w.Header(), d.r)
	}
	if o.Replaced {
		d.replaced = true
		d.fail(o)
	}
	return d.replaced
}

// hijack decides as a 101 and hands the connection over. It does not
// decide when no writer down the Unwrap chain can hijack: the handler gets
// http.ErrNotSupported and may still answer.
func (d *decision) hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj := hijacker(d.w)
	if hj == nil {
		return nil, nil, http.ErrNotSupported
	}
	if d.decide(http.StatusSwitchingProtocols) {
		return nil, nil, ErrCommitFailed
	}
	conn, rw, err := hj.Hijack()
	if err == nil {
		d.out(http.StatusSwitchingProtocols)
	}
	return conn, rw, err
}

// Push forwards an HTTP/2 server push; it does not decide.
func (d *decision) Push(target string, opts *http.PushOptions) error {
	if p, ok := d.w.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// Unwrap returns the real writer, for http.ResponseController.
func (d *decision) Unwrap() http.ResponseWriter { return d.w }

// hijacker returns the first writer down w's Unwrap chain that can hijack,
// as http.ResponseController looks for one, or nil.
func hijacker(w http.ResponseWriter) http.Hijacker {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil
		}
	}
}

// setConsistency puts the positions of the request's Consistency, if any,
// in h: the response carries what its units committed.
func setConsistency(h http.Header, r *http.Request) {
	if c := uow.ConsistencyFrom(r.Context()); c != nil {
		if v := c.String(); v != "" {
			h.Set(ConsistencyHeader, v)
		}
	}
}

func informational(code int) bool {
	return code >= 100 && code < 200 && code != http.StatusSwitchingProtocols
}

// streamWriter is the writer of streaming mode: every way the status can
// leave the process goes through decide. It offers http.Flusher,
// http.Hijacker, io.ReaderFrom, http.Pusher and Unwrap whatever the real
// writer offers: a Flush or Hijack the real writer cannot do reports
// http.ErrNotSupported, found through the Unwrap chain as
// http.ResponseController does, and the other interfaces have fallbacks.
// Unlike a generated wrapper offering only the real writer's interfaces, it
// costs one allocation, shared with the decision and the hook queue.
type streamWriter struct {
	decision
	hooks    bridge.HookContext // the request's context, carrying the hook queue
	returned bool               // the handler returned, rather than panicked or called runtime.Goexit
}

// finish runs when the handler returns, panics or exits its goroutine.
func (s *streamWriter) finish() {
	if s.returned {
		// A handler that wrote nothing gets its 200 from net/http after this.
		s.decide(http.StatusOK)
	} else {
		// A panic, which goes on unwinding to the application's recoverer,
		// or runtime.Goexit (t.FailNow in a handler): the handler did not
		// finish its work, so nothing commits. No-op if already decided.
		s.done = true
		_ = s.u.Rollback()
	}
	s.c.runHooks(s.r, &s.hooks.Queue)
}

// Header returns the real writer's header.
func (s *streamWriter) Header() http.Header { return s.w.Header() }

// WriteHeader decides on a final status before sending it; 1xx other than
// 101 pass through undecided.
func (s *streamWriter) WriteHeader(code int) {
	switch {
	case code < 100 || code > 999:
		s.w.WriteHeader(code) // net/http panics; the unit rolls back as for any panic
	case informational(code):
		if !s.done {
			s.w.WriteHeader(code)
		}
	case !s.decide(code):
		s.w.WriteHeader(code)
		s.out(code)
	}
}

// Write decides on the implicit 200 before the first byte.
func (s *streamWriter) Write(b []byte) (int, error) {
	if s.decide(http.StatusOK) {
		return len(b), nil
	}
	s.out(http.StatusOK)
	return s.w.Write(b)
}

// ReadFrom decides on the implicit 200, then copies through the real
// writer's ReadFrom when it has one (sendfile).
func (s *streamWriter) ReadFrom(src io.Reader) (int64, error) {
	if s.decide(http.StatusOK) {
		return io.Copy(io.Discard, src)
	}
	s.out(http.StatusOK)
	if rf, ok := s.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(s.w, src)
}

// Flush decides on the 200 a flush sends, and flushes.
func (s *streamWriter) Flush() { _ = s.FlushError() }

// FlushError is Flush for http.ResponseController: it reports a real writer
// that cannot flush. The 200 has been sent all the same.
func (s *streamWriter) FlushError() error {
	if !s.decide(http.StatusOK) && !s.sent {
		s.w.WriteHeader(http.StatusOK) // what the real writer's flush would send
		s.out(http.StatusOK)
	}
	return http.NewResponseController(s.w).Flush()
}

// Hijack decides as a 101 and hands the connection over.
func (s *streamWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return s.hijack() }
