package pgtest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"go.uber.org/goleak"
)

// MainOptional is Main for packages whose tests do not all need PostgreSQL:
// without a server it still runs them, and only the tests that ask for a
// database (URL, Open, Fresh, …) skip themselves, or fail when CI is set.
// With a server it is Main.
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.MainOptional(m)) }
func MainOptional(m *testing.M) int {
	u := os.Getenv(EnvURL)
	if u == "" {
		u = defaultURL
	}
	err := ping(u)
	if err == nil {
		return Main(m)
	}
	adminURL = u
	skipWhy = fmt.Sprintf("no PostgreSQL reachable at %s (%v); start one or set %s to a postgres:// URL of a server where this user may CREATE DATABASE",
		redact(u), err, EnvURL)
	fmt.Fprintln(os.Stderr, "pgtest: the tests that need PostgreSQL will skip (fail with CI set): "+skipWhy)
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: leaked goroutines: %v\n", err)
			code = 1
		}
	}
	return code
}

// maxTag keeps database names within PostgreSQL's 63 bytes, random suffix
// included: the server would cut a longer name, and the suffix with it.
const maxTag = 40

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
	tag = sanitize(tag)
	if len(tag) > maxTag {
		tag = tag[:maxTag]
	}
	name := "uowkit_" + tag + "_" + randomSuffix()
	if err := exec(adminURL, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	u, err := withDatabase(adminURL, name)
	if err != nil {
		tb.Fatal(err)
	}
	mu.Lock()
	dbURLs[name] = u // Main drops it too, should the cleanup fail
	mu.Unlock()
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

// WaitBlocked blocks until at least n statements containing marker are
// waiting for a lock on other connections of db's database
// (pg_stat_activity shows wait_event_type Lock), and fails the test after
// 30 s. Use it to order lock waits for certain, for example to decide which
// side of a deadlock the server will detect: WaitRunning only says that a
// statement has started.
func WaitBlocked(tb testing.TB, db *sqlx.DB, marker string, n int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		err := db.Get(&waiting, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'active' AND wait_event_type = 'Lock'
			AND pid <> pg_backend_pid() AND strpos(query, $1) > 0`, marker)
		if err != nil {
			tb.Fatalf("pgtest: pg_stat_activity: %v", err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: %d statement(s) containing %q waiting for a lock after 30 s, want %d", waiting, marker, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
