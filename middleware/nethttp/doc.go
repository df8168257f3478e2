// Package nethttp is net/http middleware that gives every request a lazy unit
// of work and decides its fate from the response status, before the status
// line leaves the process.
//
// # The decision
//
//	mux := http.NewServeMux()
//	mux.Handle("POST /teams/{id}/players", addPlayer)
//	http.ListenAndServe(":8080", nethttp.Transaction(m)(mux))
//
// Repositories find the request's unit in the context ([repo.From]). The unit
// is lazy: a request that never touches the database makes no round trip and
// takes no connection. When the status becomes known — the handler's first
// WriteHeader, its first Write (an implicit 200), a Flush (also through
// [http.ResponseController]), a ReadFrom (io.Copy), a Hijack, or the handler
// returning without writing — the middleware decides once:
//
//   - the status commits (below 400 by default, see [Options].Commit): every
//     transaction the request used is committed. If the commit fails, the
//     client gets 500 instead of the handler's response (503 with
//     Retry-After for a serialization failure or deadlock when nothing
//     committed, 504 when Options.Timeout passed first; always 500 for a
//     partial commit across several databases); the handler's later writes
//     are discarded, as if they had been sent, and the error goes to
//     Options.ErrorHandler;
//   - otherwise everything is rolled back and the handler's response goes
//     through unchanged;
//   - a panic rolls back and goes on (to your recoverer); a cancelled request
//     context (the client went away) rolls the unit back at once.
//
// [uow.SetRollbackOnly] in a handler rolls back even a 2xx, which then goes
// through: a dry run. A handler that ignored a failed statement cannot commit
// (the unit is rollback-only), so its 2xx becomes a 500.
//
// After the decision, repository calls fail with [uow.ErrDone]; they never
// fall back to autocommit. So do all the database work, then write the
// response.
//
// Informational statuses (1xx other than 101) pass through undecided. A
// Hijack is decided as a 101, by the same commit policy, before the
// connection is handed over: the handler has taken the response out of the
// middleware's hands, and what it does with the connection afterwards is
// outside the unit. If that commit fails, Hijack returns [ErrCommitFailed]
// and the client gets the error response.
//
// The wrapped ResponseWriter offers [http.Flusher], [http.Hijacker],
// [http.Pusher], [io.ReaderFrom] and Unwrap (for [http.ResponseController]) in both modes,
// whatever the server's writer offers: a Hijack the server's writer cannot
// do (HTTP/2) reports [http.ErrNotSupported] without deciding, and a Flush it
// cannot do still decides and sends the status. In streaming mode the
// writer is hand-written, one allocation shared with the request's decision,
// so a request that never touches the database pays little (see the
// NoDBRequest benchmark).
//
// # Timeout
//
// Options.Timeout is a deadline on the request's context, which the handler
// gets and the unit runs under. If it passes before the decision, the unit
// is rolled back at once, a wait for a pool connection or a running
// statement is interrupted, and a status that would commit becomes 504 (a
// status the policy rejects, such as the handler's own 408, goes through).
// So an exhausted pool sheds load within the Timeout instead of queueing
// requests behind it; a client that hangs up ends the wait too. Deciding
// does not cancel the context: a handler that goes on streaming after a
// flush, or serving a hijacked connection, keeps it until it returns or the
// deadline passes.
//
// # Hooks after the response
//
// The after-commit and after-rollback hooks of the request's units
// ([uow.AfterCommit]) do not run at the commit, which happens before the
// status goes out: they run once the response is complete (the handler has
// returned and the decision has been written), on a goroutine of their own,
// so that a slow hook never holds the response back. Their context carries
// the request's values, not its cancellation, and ends after
// Options.HookTimeout (10s by default). A request whose units registered no
// hook starts no goroutine.
//
// # Buffered mode and retries
//
// With Options.Buffer the response is held back (up to that many bytes), so
// the client hears nothing until the handler has returned and the unit is
// finished; WriteHeader then only records the status. When the request's
// unit has a retry policy — uow.Retry among its options (Options.UnitOptions
// or the manager's uow.WithDefaults), or the default policy of a
// serializable unit — a failure the policy retries re-runs the whole handler
// on a fresh unit after the policy's backoff, replaying the request body, as
// long as nothing has reached the client: a serialization failure or
// deadlock at any statement or at COMMIT, a connection lost at BEGIN. The
// loop is the policy's own (retry.Policy.Do), the one uow's Do runs, so a
// request is retried exactly when Do would retry the same work; a partial
// or unknown commit never is. When attempts run out, the last attempt's
// response goes out as it was decided; if the request's context ends during
// a backoff, the client gets 503 (504 for a deadline). This is what makes
// SERIALIZABLE isolation practical behind HTTP handlers. A larger response,
// a Flush or a Hijack falls back to streaming, decided at that moment with
// the guarantee above; an io.Copy (ReadFrom) is buffered up to the limit
// too. As without the buffer, the headers sent are those set when the
// status was set; later changes count only for trailers. Handlers may run
// more than once: keep side effects in [uow.AfterCommit] hooks.
//
// # Options
//
// [Transaction] uses the defaults; [TransactionWithOptions] takes [Options],
// whose zero fields mean their defaults. Invalid options panic when the
// middleware is built, never at request time. [ReadOnlySafeMethods] is a
// ready Options.UnitOptions. The Echo adapter,
// github.com/uowkit/uowkit/middleware/uowecho, takes the same [Options].
//
// See docs/middleware.md for the full decision table and the known limits.
//
// [repo.From]: https://pkg.go.dev/github.com/uowkit/uowkit/repo#From
package nethttp
