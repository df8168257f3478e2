package webtest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/retry"
	"github.com/uowkit/uowkit/uow"
)

// Setup is what a shared scenario asks a framework's test to serve.
type Setup struct {
	// M begins the units.
	M *uow.Manager
	// Options are the middleware's options, which every adapter takes.
	Options nethttp.Options
	// Outer, if set, is a middleware further out than the unit's (inside
	// the framework's recoverer): it runs next, possibly with another
	// request.
	Outer func(w http.ResponseWriter, r *http.Request, next func(*http.Request))
	// Handler is the route's handler for every method and path, written
	// against net/http: Echo's adapter passes c.Response() and c.Request()
	// and returns the error to Echo; Gin's passes c.Writer and c.Request
	// and records the error with c.Error; net/http's answers an error with
	// 500.
	Handler func(w http.ResponseWriter, r *http.Request) error
}

// Stack serves a Setup through one framework and its unit middleware.
type Stack func(Setup) http.Handler

// Mode is one way the middleware can hold a response.
type Mode struct {
	Name    string
	Options nethttp.Options
}

// Modes returns streaming and buffered mode: a behaviour must be decided the
// same in both.
func Modes() []Mode {
	return []Mode{{"streaming", nethttp.Options{}}, {"buffered", nethttp.Options{Buffer: 1 << 16}}}
}

// RetryWith returns an Options.UnitOptions that gives every request's unit
// the retry policy p: buffered mode re-runs the handler by it.
func RetryWith(p retry.Policy) func(*http.Request) []uow.Option {
	opts := []uow.Option{uow.Retry(p)}
	return func(*http.Request) []uow.Option { return opts }
}

// HijackReply takes the connection over through http.ResponseController,
// calls then, and answers on the connection with [Reply].
func HijackReply(w http.ResponseWriter, body string, then func()) error {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	then()
	return Reply(conn, rw, body)
}

// Reply answers on a hijacked connection with a raw 200 carrying body, and
// closes it.
func Reply(conn net.Conn, rw *bufio.ReadWriter, body string) error {
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	return rw.Flush()
}

// endOnDemand returns a child of parent that ends with err
// (context.Canceled or context.DeadlineExceeded) when end is called: a
// cancellation or a deadline exactly when a test says so, with no clock to
// wait for. end is idempotent; call it at the latest when the request is
// over.
func endOnDemand(parent context.Context, err error) (ctx context.Context, end func()) {
	c := &ending{Context: parent, done: make(chan struct{}), err: err}
	return c, func() { c.once.Do(func() { close(c.done) }) }
}

type ending struct {
	context.Context
	done chan struct{}
	err  error
	once sync.Once
}

func (c *ending) Done() <-chan struct{} { return c.done }

func (c *ending) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Scenarios runs the framework-independent scenarios against stack, each as
// a parallel subtest named after it, on databases of tag.
func Scenarios(t *testing.T, tag string, stack Stack) {
	for _, sc := range []struct {
		name string
		run  func(*testing.T, string, Stack)
	}{
		{"TwoDatabases", twoDatabases},
		{"Deadline", deadline},
		{"RetryBackoffEnds", retryBackoffEnds},
		{"LargeRequestBody", largeRequestBody},
		{"PanicRollsBackAtOnce", panicRollsBackAtOnce},
		{"CommitPolicy", commitPolicy},
		{"HandlerError", handlerError},
		{"LateHeaders", lateHeaders},
		{"FailureResponse", failureResponse},
		{"SameRetryAsDo", sameRetryAsDo},
		{"HooksAfterResponse", hooksAfterResponse},
		{"ExhaustedPool", exhaustedPool},
		{"DeadConnection", deadConnection},
		{"NoRoundTrip", noRoundTrip},
		{"SkipperAndReadOnlySafeMethods", skipperAndReadOnlySafeMethods},
		{"ClientDisconnect", clientDisconnect},
		{"PanicAfterWriting", panicAfterWriting},
		{"SuccessNotCommitted", successNotCommitted},
		{"BufferOverflow", bufferOverflow},
		{"SerializationFailureAtCommit", serializationFailureAtCommit},
		{"RealSerializationFailure", realSerializationFailure},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, tag, stack)
		})
	}
}
