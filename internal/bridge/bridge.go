// Package bridge carries what uowkit's own packages hand each other without
// widening the public API: the queue in which the HTTP middleware collects a
// request's unit hooks, to run them once the response has gone, and the
// retry policy that package uow gives its units.
//
// Package uow sets RetryPolicy in its init; the middleware adapters read it.
package bridge

import (
	"context"
	"sync"

	"github.com/uowkit/uowkit/retry"
)

// HookQueue collects the after-commit and after-rollback hooks of the units
// finished under one request, so that the middleware runs them after the
// response has been written. It is safe for concurrent use.
type HookQueue struct {
	mu  sync.Mutex
	fns []func(ctx context.Context)
}

type queueKey struct{}

func (queueKey) String() string { return "uowkit.hookqueue" }

// WithHookQueue returns a context carrying a new, empty queue.
func WithHookQueue(ctx context.Context) (context.Context, *HookQueue) {
	q := &HookQueue{}
	return context.WithValue(ctx, queueKey{}, q), q
}

// HookContext is a context carrying a queue of its own: the HTTP middleware
// embeds one in the per-request value it allocates anyway, so that the
// queue costs no allocation of its own on requests that never use it. Set
// Context (the parent) before use; HookQueueFrom finds Queue.
type HookContext struct {
	context.Context
	Queue HookQueue
	// Request describes the request for log lines (see RequestFrom), when
	// its Method is set.
	Request Request
}

// Value returns the queue and the request for their keys, and the parent's
// values otherwise.
func (c *HookContext) Value(key any) any {
	switch key.(type) {
	case queueKey:
		return &c.Queue
	case requestKey:
		if c.Request.Method != "" {
			return &c.Request
		}
	}
	return c.Context.Value(key)
}

// Describe fills c.Request: the request's method, its path, where to read
// the pattern that matched it once the router has run (the Pattern field of
// the *http.Request the handler gets: net/http's ServeMux sets it; the Echo
// and Gin adapters set it to their route), and its id (the X-Request-Id
// header, if any).
func (c *HookContext) Describe(method, path string, pattern *string, id string) {
	c.Request = Request{Method: method, Path: path, Pattern: pattern, ID: id}
}

// HookQueueFrom returns the queue carried by ctx, or nil.
func HookQueueFrom(ctx context.Context) *HookQueue {
	q, _ := ctx.Value(queueKey{}).(*HookQueue)
	return q
}

// Add queues fn.
func (q *HookQueue) Add(fn func(ctx context.Context)) {
	q.mu.Lock()
	q.fns = append(q.fns, fn)
	q.mu.Unlock()
}

// Len returns the number of queued functions.
func (q *HookQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.fns)
}

// Run runs the queued functions in order with ctx and empties the queue.
// Functions queued while it runs are run too.
func (q *HookQueue) Run(ctx context.Context) {
	for {
		q.mu.Lock()
		fns := q.fns
		q.fns = nil
		q.mu.Unlock()
		if len(fns) == 0 {
			return
		}
		for _, fn := range fns {
			fn(ctx)
		}
	}
}

// RetryPolicy returns the policy with which uow's Do would retry a root unit
// of manager m (a *uow.Manager) begun with opts (a []uow.Option): the Retry
// option, or the default for serializable units, with OnRetry also reporting
// each retry to the manager's Observer. It returns nil when such a unit is
// not retried. Package uow sets it.
var RetryPolicy func(m any, opts any) *retry.Policy

// Request describes the HTTP request a unit serves, for log lines: the
// middleware puts it on the request's context, the slog observer reads it.
type Request struct {
	Method, Path, ID string
	// Pattern points at the route the router matched, read when needed.
	Pattern *string
}

// Route returns the pattern the request matched, else its path.
func (r *Request) Route() string {
	if r.Pattern != nil && *r.Pattern != "" {
		return *r.Pattern
	}
	return r.Path
}

type requestKey struct{}

func (requestKey) String() string { return "uowkit.request" }

// WithRequest returns ctx carrying r.
func WithRequest(ctx context.Context, r *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// RequestFrom returns the request ctx carries, or nil.
func RequestFrom(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}

// Retry runs attempt by policy p the way uow's Do does, reporting each
// backoff to the Observer of manager m (a *uow.Manager). Package uow sets it.
var Retry func(m any, ctx context.Context, p *retry.Policy, attempt func(ctx context.Context, n int) error) error
