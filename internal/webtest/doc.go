// Package webtest holds what the HTTP middleware tests share: a table of
// their own in a real database, two databases for partial commits, COMMIT-time
// failures on demand, a real server to send requests to, and the
// framework-independent scenarios ([Scenarios]) that each middleware's tests
// (net/http, Echo and Gin) run through a [Stack] of their own: one table for
// every adapter. What each adapter checks of its own construction and cost
// is shared too ([Misconfiguration], [NoDBAllocations], [BenchmarkHealthz]),
// and so are the two [Modes] its own tests run in.
package webtest
