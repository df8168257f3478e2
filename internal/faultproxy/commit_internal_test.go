package faultproxy

import "testing"

func TestIsCommit(t *testing.T) {
	t.Parallel()
	q := func(s string) []byte { return append([]byte(s), 0) }
	parse := func(name, s string) []byte { return append(append(q(name), q(s)...), 0, 0) }
	for _, tc := range []struct {
		typ  byte
		body []byte
		want bool
	}{
		{'Q', q("COMMIT"), true},
		{'Q', q("commit"), true}, // pgx
		{'Q', q("  Commit ; "), true},
		{'Q', q("COMMIT;"), true},
		{'Q', q("commit  work"), true},
		{'Q', q("END"), true},
		{'Q', q("END TRANSACTION;"), true},
		{'P', parse("", "COMMIT"), true},
		{'P', parse("stmt_1", "commit"), true},
		{'Q', q("ROLLBACK"), false},
		{'Q', q("COMMIT PREPARED 'x'"), false},
		{'Q', q("SELECT 'commit'"), false},
		{'Q', q("COMMITTED"), false},
		{'Q', q(""), false},
		{'B', q("COMMIT"), false},
		{'P', []byte("no terminator"), false},
	} {
		if got := isCommit(tc.typ, tc.body); got != tc.want {
			t.Errorf("isCommit(%q, %q) = %v, want %v", tc.typ, tc.body, got, tc.want)
		}
	}
}
