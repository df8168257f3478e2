package pgtest

import (
	"testing"

	"github.com/jmoiron/sqlx"
)

// MainOptional is Main for packages whose tests do not all need PostgreSQL:
// without a server it still runs them, and only the tests that ask for a
// database (URL, Open, Fresh, …) skip themselves, or fail when CI is set.
// With a server it is Main.
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.MainOptional(m)) }
func MainOptional(m *testing.M) int { return run(m, true) }

// FreshURL returns the URL of a database created for this test alone and
// dropped when it ends. Unlike URL, it never hands out a database that
// another test, or an earlier run under -count, has used, so a test may count
// the rows of whole tables. Pools on it must be closed by the end of the
// test: open them after calling FreshURL and close them in a cleanup (cleanups
// run last-registered first), as Fresh does; the drop ends any connection
// left. It skips the test (fails it under CI) when no server is reachable.
func FreshURL(tb testing.TB, tag string) string {
	tb.Helper()
	requireServer(tb)
	mu.Lock()
	name, u, err := createLocked(tag) // Main drops it too, should the cleanup fail
	mu.Unlock()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := dropDatabase(name); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		mu.Lock()
		delete(dbURLs, name)
		mu.Unlock()
	})
	return u
}

// Fresh returns a pool on a database of this test's own (see FreshURL),
// closed at the end of the test after checking that the test left no
// connection in use, as Open does.
func Fresh(tb testing.TB, tag string) *sqlx.DB {
	tb.Helper()
	return openPool(tb, FreshURL(tb, tag))
}
