// Package pgtest gives tests a real PostgreSQL database of their own.
//
// The server is found through UOWKIT_POSTGRES_URL (a lib/pq URL or DSN); without
// it, postgres://postgres@127.0.0.1:5432/postgres is tried. Each test package calls
// [Main] from TestMain: it creates a fresh database named after the package, runs
// the tests and drops the database. When no server can be reached the
// package's tests are skipped with a message that says how to provide one,
// unless the CI environment variable is set: then the run fails, so that CI
// never passes without having exercised a real database. After the tests it
// checks, with goleak, that no goroutine was leaked.
//
// [Open] and [URL] share one database per tag within a process; [Fresh] and
// [FreshURL] create one per call, dropped when the test ends, for tests that
// count rows across whole tables and must stay re-runnable (-count=2). A
// package whose tests do not all need PostgreSQL (the example's SQLite half)
// calls [MainOptional] instead of [Main]: without a server only the tests
// that ask for one skip (or fail, under CI). [WaitRunning] and [WaitBlocked]
// wait until the server shows a statement running, or n statements waiting
// for a lock, so that tests cancel or release at a known point.
//
// The scale-out topology has helpers of its own, each skipping (failing
// under CI) when its server is missing: [ReplicaURL] and [Replica2URL] reach
// a tag's database on the two streaming replicas, [StopReplica2] stops the
// second for a test, [PgBouncerURL] goes through PgBouncer in transaction
// mode, and [RequirePrepared] asks for max_prepared_transactions > 0.
package pgtest
