#!/usr/bin/env bash
# What importing uowkit adds to a binary: builds (a) bench/cmd/hello, a
# net/http hello world, and (b) bench/cmd/hellouow, the same program with its
# handler wrapped in middleware/nethttp over a uow.Manager, both with
# -trimpath (and again with -ldflags "-s -w"), and reports their sizes, the
# growth, and the packages each links (go list -deps: total and outside the
# standard library). Fails if a database driver is among (b)'s packages: a
# known driver import path, or any package that calls sql.Register.
#
# Runs in the workspace (go.work at the repository root). Settings
# (environment): OUT (directory for the binaries; default a new directory
# under ${TMPDIR:-/tmp}).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-size.XXXXXX")}
mkdir -p "$out"
cd "$root"

a=./bench/cmd/hello
b=./bench/cmd/hellouow
drivers='^(github\.com/lib/pq|github\.com/jackc/pgx|github\.com/go-sql-driver/mysql|modernc\.org/sqlite|github\.com/mattn/go-sqlite3|github\.com/microsoft/go-mssqldb|github\.com/denisenkom/go-mssqldb|github\.com/ClickHouse/|github\.com/sijms/go-ora|github\.com/snowflakedb/|github\.com/DATA-DOG/go-sqlmock)(/|$)'

size() { stat -c %s "$1"; }
mb() { awk -v n="$1" 'BEGIN { printf "%.2f MB", n / 1e6 }'; }
deps() { go list -deps "$1" | wc -l; }
nonstd() { go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$1" | wc -l; }

go build -trimpath -o "$out/hello" "$a"
go build -trimpath -o "$out/hellouow" "$b"
go build -trimpath -ldflags '-s -w' -o "$out/hello.stripped" "$a"
go build -trimpath -ldflags '-s -w' -o "$out/hellouow.stripped" "$b"

sa=$(size "$out/hello") sb=$(size "$out/hellouow")
ssa=$(size "$out/hello.stripped") ssb=$(size "$out/hellouow.stripped")

echo "# $(date -u +%FT%TZ) $(go version) uowkit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
echo
echo "| program | size (-trimpath) | size (-trimpath -s -w) | packages linked | of which not std (main included) |"
echo "|---|---|---|---|---|"
printf '| (a) %s | %s (%d B) | %s | %d | %d |\n' "$a" "$(mb "$sa")" "$sa" "$(mb "$ssa")" "$(deps $a)" "$(nonstd $a)"
printf '| (b) %s | %s (%d B) | %s | %d | %d |\n' "$b" "$(mb "$sb")" "$sb" "$(mb "$ssb")" "$(deps $b)" "$(nonstd $b)"
echo
echo "growth (b - a): $(mb $((sb - sa))) ($((sb - sa)) B); stripped: $(mb $((ssb - ssa)))"
echo
echo "packages (b) links outside the standard library:"
go list -deps -f '{{if not .Standard}}  {{.ImportPath}}{{end}}' "$b"

echo
found=$(go list -deps "$b" | grep -E "$drivers" || true)
# Any dependency that registers a database/sql driver is a driver, whatever its name.
registers=$(go list -deps -f '{{if not .Standard}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}' "$b" |
	grep . | xargs -r grep -l 'sql\.Register(' || true)
if [ -n "$found$registers" ]; then
	echo "FAIL: (b) links a database driver:"
	[ -n "$found" ] && echo "$found" | sed 's/^/  /'
	[ -n "$registers" ] && echo "$registers" | sed 's/^/  calls sql.Register: /'
	exit 1
fi
echo "ok: no database driver among (b)'s packages (no known driver path, no sql.Register call)"
