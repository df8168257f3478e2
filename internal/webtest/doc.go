// Package webtest holds what the HTTP middleware tests share: a table of
// their own in a real database, two databases for partial commits, COMMIT-time
// serialization failures on demand, and a real server to send requests to.
package webtest
