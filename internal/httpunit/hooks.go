package httpunit

import (
	"context"
	"fmt"
	"net/http"

	"github.com/uowkit/uowkit/internal/bridge"
)

// runHooks runs the hooks that the request's units queued in q (package uow
// queues a root unit's after-commit and after-rollback hooks on the
// request's context instead of running them at Commit or Rollback), once the
// response is complete: the handler has returned and the decision has been
// written. They run on a goroutine of their own, so that no hook, however
// slow, holds the response back, with a context that carries the request's
// values but not its cancellation (the request ends now), bounded by
// HookTimeout. A request whose units queued nothing, the common case, starts
// no goroutine. Options.HookGroup, when set, counts the goroutine, so that
// a server can wait for it at shutdown.
//
// Package uow contains each hook's errors and panics (reported to the
// Observer); a panic that escapes all the same (an Observer's) is reported
// to ErrorHandler rather than crashing the process: no recoverer of the
// application is on this goroutine.
func (c *Config) runHooks(r *http.Request, q *bridge.HookQueue) {
	if q.Len() == 0 {
		return
	}
	if g := c.o.HookGroup; g != nil {
		g.Add(1)
	}
	go func() {
		if g := c.o.HookGroup; g != nil {
			defer g.Done()
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.o.HookTimeout)
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				c.report(r, fmt.Errorf("uow middleware: hook panicked: %v", p))
			}
		}()
		q.Run(ctx)
	}()
}
