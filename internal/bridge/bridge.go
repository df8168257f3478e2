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
}

// Value returns the queue for its key, and the parent's values otherwise.
func (c *HookContext) Value(key any) any {
	if _, ok := key.(queueKey); ok {
		return &c.Queue
	}
	return c.Context.Value(key)
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
