package uowgin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/uowkit/uowkit/middleware/nethttp"
)

// noWritten is gin's size of a response whose header has not been written.
const noWritten = -1

// writer is the gin.ResponseWriter the handlers get as c.Writer. It keeps
// gin's own rules — WriteHeader only records the status, which goes out at
// WriteHeaderNow, the first Write or WriteString, a Flush, or after the
// handlers — and routes every way the status leaves through w, the shared
// middleware's writer, which decides the unit first.
type writer struct {
	q      *request
	w      http.ResponseWriter // the shared middleware's, for this run
	status int                 // the status to send
	size   int                 // bytes written, noWritten before the header
	set    bool                // the handlers set the status
}

var _ gin.ResponseWriter = (*writer)(nil)

// Header returns the response headers.
func (w *writer) Header() http.Header { return w.w.Header() }

// WriteHeader records the status, as gin's writer does: it goes out with
// the header. An informational status (1xx other than 101) goes out at
// once, undecided.
func (w *writer) WriteHeader(code int) {
	switch {
	case code <= 0 || w.Written():
		// gin ignores both
	case informational(code):
		w.w.WriteHeader(code)
	default:
		w.status, w.set = code, true
	}
}

// WriteHeaderNow sends the header with the recorded status, once: the
// decision.
func (w *writer) WriteHeaderNow() {
	if w.size == noWritten {
		w.size = 0
		w.w.WriteHeader(w.status)
	}
}

// Write sends the header if needed, then b.
func (w *writer) Write(b []byte) (int, error) {
	w.WriteHeaderNow()
	n, err := w.w.Write(b)
	w.size += n
	return n, err
}

// WriteString is Write for a string.
func (w *writer) WriteString(s string) (int, error) {
	w.WriteHeaderNow()
	n, err := io.WriteString(w.w, s)
	w.size += n
	return n, err
}

// Status returns the status that reached the client once one has (500
// after a failed commit, whatever the handler set), and the status to be
// sent until then.
func (w *writer) Status() int {
	if w.q.sent {
		return w.q.sentStatus
	}
	return w.status
}

// Size returns the bytes of the body that reached the client once the
// status has, and the bytes written so far until then (noWritten before
// the header).
func (w *writer) Size() int {
	if w.q.sent {
		return w.q.orig.Size()
	}
	return w.size
}

// Written reports whether the header has been written, by the handlers'
// account: a buffered response may still be held back.
func (w *writer) Written() bool { return w.size != noWritten }

// Flush sends the header if needed, then flushes.
func (w *writer) Flush() { _ = w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *writer) FlushError() error {
	w.WriteHeaderNow()
	return http.NewResponseController(w.w).Flush()
}

// Hijack decides as a 101 and hands the connection over. On a connection
// that cannot be hijacked (HTTP/2) it returns http.ErrNotSupported without
// deciding, and the handler may still answer.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := w.w.(http.Hijacker).Hijack()
	if (err == nil || errors.Is(err, nethttp.ErrCommitFailed)) && w.size == noWritten {
		w.size = 0
	}
	return conn, rw, err
}

// CloseNotify is gin's writer's (c.Stream uses it).
func (w *writer) CloseNotify() <-chan bool { return w.q.orig.CloseNotify() }

// Pusher returns the pusher for HTTP/2 server push, or nil.
func (w *writer) Pusher() http.Pusher {
	if w.q.orig.Pusher() == nil {
		return nil
	}
	p, _ := w.w.(http.Pusher)
	return p
}

// Unwrap returns the shared middleware's writer, for
// http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.w }

// out is the writer the shared middleware writes the decided response to:
// gin's writer as the middleware found it (w), so that gin, gin.Logger and
// the middlewares further out see the status and size that reached the
// client. A final status goes out at once (WriteHeader and WriteHeaderNow):
// the unit has been decided on it.
type out struct {
	w         gin.ResponseWriter
	below     http.ResponseWriter // w's Unwrap, or w
	unwrapped bool                // below is under w
}

// Header returns gin's writer's headers.
func (o *out) Header() http.Header { return o.w.Header() }

// WriteHeader sends a final status through gin's writer. An informational
// status goes to the writer under it, so that gin does not take it for the
// final one; it is dropped if gin's writer cannot be unwrapped. An invalid
// code panics, as net/http does, before gin's writer takes it for sent: a
// recoverer further out can still answer.
func (o *out) WriteHeader(code int) {
	switch {
	case code < 100 || code > 999:
		panic(fmt.Sprintf("uowgin: invalid WriteHeader code %d", code))
	case informational(code):
		if o.unwrapped {
			o.below.WriteHeader(code)
		}
	default:
		o.w.WriteHeader(code)
		o.w.WriteHeaderNow()
	}
}

// Write writes b through gin's writer.
func (o *out) Write(b []byte) (int, error) { return o.w.Write(b) }

// Flush flushes gin's writer.
func (o *out) Flush() { o.w.Flush() }

// Push forwards an HTTP/2 server push.
func (o *out) Push(target string, opts *http.PushOptions) error {
	if p := o.w.Pusher(); p != nil {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// Unwrap returns the writer under gin's, for http.ResponseController: not
// gin's own, whose Hijack would panic where the connection cannot be
// hijacked.
func (o *out) Unwrap() http.ResponseWriter { return o.below }

// hijackOut is out where the connection can be hijacked.
type hijackOut struct{ out }

// Hijack hands the connection over through gin's writer, which then counts
// as written and reports 101.
func (o *hijackOut) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	o.w.WriteHeader(http.StatusSwitchingProtocols)
	return o.w.Hijack()
}

// hijackable reports whether w, or a writer down its Unwrap chain, can
// hijack, as http.ResponseController looks for one.
func hijackable(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

func informational(code int) bool {
	return code >= 100 && code < 200 && code != http.StatusSwitchingProtocols
}
