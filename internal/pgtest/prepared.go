package pgtest

import (
	"database/sql"
	"os"
	"testing"
)

// RequirePrepared skips tb, or fails it under CI, when the server does not
// allow prepared transactions (max_prepared_transactions = 0), which
// two-phase commit needs. The setting takes a server restart; .ci/run makes
// it (ALTER SYSTEM SET max_prepared_transactions = 64, then a restart).
func RequirePrepared(tb testing.TB) {
	tb.Helper()
	requireServer(tb)
	db, err := sql.Open("postgres", adminURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT current_setting('max_prepared_transactions')::int`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	if n > 0 {
		return
	}
	why := "pgtest: max_prepared_transactions is 0 on " + redact(adminURL) +
		": two-phase commit needs it; run `ALTER SYSTEM SET max_prepared_transactions = 64` and restart the server (.ci/run does)"
	if os.Getenv("CI") != "" {
		tb.Fatal(why)
	}
	tb.Skip(why)
}
