#!/usr/bin/env bash
# What a unit of work costs on pgx's own pool, against a real PostgreSQL:
# hand-written pool.Begin/tx.Exec/tx.Commit, uowkit (Manager.Do over
# uowpgx.WithPool, statements through uowpgx.From) and go-transaction-manager
# (trm) with its pgxv5 driver (bench/pgx_test.go). Unlike bench-core.sh there
# is no do-nothing driver here: every case makes its round trips, so the
# libraries' own cost shows mostly in cpu-ns/op (the benchmark process's CPU
# time per unit, the server's excluded) and in the allocations.
#
# Builds the test binary of bench/ once, then runs it ROUNDS times; in each
# round every implementation is a separate invocation (a fresh process, with
# a fresh database and a fresh table, see internal/pgtest), in forward order
# on even rounds and reversed on odd ones, so that drift (thermal, the
# server's caches, noisy neighbours) spreads over all of them. Prints the
# medians per case and implementation, and the ratios uowkit/hand-written
# and uowkit/trm: of the medians, and the median of the per-round ratios.
#
# Usage: scripts/bench-pgx.sh            run, then summarise
#        scripts/bench-pgx.sh -s DIR     summarise the runs kept in DIR
#
# Settings (environment): UOWKIT_POSTGRES_URL (the server, as for the tests;
# default postgres://postgres@127.0.0.1:5432/postgres), ROUNDS (10),
# BENCHTIME (1s), OUT (directory for the raw output; default a new directory
# under ${TMPDIR:-/tmp}), SYNC_COMMIT (the sessions' synchronous_commit,
# default off: the same COMMITs for all three, without the disk's flush
# latency and its noise), CANCELABLE (1: run under a cancelable context, as
# a request's is), WARMUP (how long each case runs unmeasured first, default
# 200ms), BENCHSTAT (a benchstat command to run on the results too; default
# none).
set -euo pipefail

impls=(PgxHand PgxUowkit PgxTrm)

# summarise prints medians and ratios of the runs in directory $1.
summarise() {
	local dir=$1
	echo
	cat "$dir/header.txt" 2>/dev/null || true
	echo "medians of $(grep -c '^BenchmarkPgxHand/1_INSERT' "$dir/all.txt") rounds ($dir/all.txt)"
	echo
	awk '
	function median(list,   a, n, i, j, t) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	function has(m, k) { return (m SUBSEP k) in v }
	function med(m, k) { return median(v[m, k]) }
	function us(ns) { return sprintf("%.1f µs", ns / 1000) }
	function cell(m, k) { return has(m, k) ? us(med(m, k)) : "—" }
	function ratio(m, a, b) { return has(m, a) && has(m, b) ? sprintf("%.3f", med(m, a) / med(m, b)) : "—" }
	# the median over rounds of the ratio within a round, whose runs were
	# close in time: a check on ratio() when the machine is noisy.
	function pairwise(m, a, b,   x, y, n, i, l) {
		if (!has(m, a) || !has(m, b)) return "—"
		n = split(v[m, a], x, " "); split(v[m, b], y, " "); l = ""
		for (i = 1; i <= n; i++) l = l " " x[i] / y[i]
		return sprintf("%.3f", median(l))
	}
	function table(m, title,   i, c, h, u, r) {
		print title
		print ""
		print "| case | hand-written | uowkit | trm | uowkit/hand | uowkit/trm | per round: uowkit/hand | uowkit/trm |"
		print "|---|---|---|---|---|---|---|---|"
		for (i = 1; i <= nc; i++) {
			c = cases[i]; h = "PgxHand" SUBSEP c; u = "PgxUowkit" SUBSEP c; r = "PgxTrm" SUBSEP c
			printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c, cell(m, h), cell(m, u), cell(m, r),
				ratio(m, u, h), ratio(m, u, r), pairwise(m, u, h), pairwise(m, u, r)
		}
		print ""
	}
	/^BenchmarkPgx[A-Za-z]+\// {
		split($1, p, "/"); impl = substr(p[1], 10); c = p[2]; sub(/-[0-9]+$/, "", c)
		k = impl SUBSEP c
		for (i = 3; i <= NF; i++) {
			if ($i == "ns/op") v["ns", k] = v["ns", k] " " $(i-1)
			if ($i == "cpu-ns/op") v["cpu", k] = v["cpu", k] " " $(i-1)
			if ($i == "B/op") v["bytes", k] = v["bytes", k] " " $(i-1)
			if ($i == "allocs/op") v["allocs", k] = v["allocs", k] " " $(i-1)
		}
		if (!(c in seen)) { seen[c] = 1; cases[++nc] = c }
	}
	END {
		split("PgxHand PgxUowkit PgxTrm", names, " ")
		split("hand-written uowkit trm", labels, " ")
		table("ns", "wall time per unit (ns/op, round trips included), medians:")
		if (has("cpu", "PgxHand" SUBSEP "1_INSERT"))
			table("cpu", "client CPU time per unit (cpu-ns/op: the benchmark process, user+sys; the server not counted), medians:")
		print "allocations and bytes per unit (medians), and uowkit'"'"'s extra over hand-written:"
		print ""
		print "| case | hand-written | uowkit | trm | uowkit - hand |"
		print "|---|---|---|---|---|"
		for (i = 1; i <= nc; i++) {
			c = cases[i]
			printf "| %s |", c
			for (j = 1; j <= 3; j++) {
				k = names[j] SUBSEP c
				printf " %s |", has("allocs", k) ? sprintf("%g allocs, %g B", med("allocs", k), med("bytes", k)) : "—"
			}
			h = "PgxHand" SUBSEP c; u = "PgxUowkit" SUBSEP c
			printf " %s |\n", has("allocs", h) && has("allocs", u) ? sprintf("%+g allocs, %+g B", med("allocs", u) - med("allocs", h), med("bytes", u) - med("bytes", h)) : "—"
		}
		a = "1_INSERT"; b = "5_INSERTs"
		print ""
		print "per statement beyond the first, (5_INSERTs - 1_INSERT) / 4:"
		for (j = 1; j <= 3; j++) {
			x = names[j] SUBSEP a; y = names[j] SUBSEP b
			if (has("ns", x) && has("ns", y))
				printf "  %-12s %5.2f allocs, %6.1f µs wall, %s µs cpu\n", labels[j], (med("allocs", y) - med("allocs", x)) / 4, (med("ns", y) - med("ns", x)) / 4000, has("cpu", x) ? sprintf("%.1f", (med("cpu", y) - med("cpu", x)) / 4000) : "—"
		}
	}' "$dir/all.txt"

	local benchstat=${BENCHSTAT:-none}
	[ "$benchstat" = none ] && return 0
	local impl
	for impl in "${impls[@]}"; do
		sed "s/^Benchmark$impl\//BenchmarkUnit\//" "$dir/$impl.txt" >"$dir/$impl.benchstat"
	done
	echo
	echo "benchstat:"
	(cd "$dir" && $benchstat hand=PgxHand.benchstat uowkit=PgxUowkit.benchstat trm=PgxTrm.benchstat) ||
		echo "(benchstat could not be run: \"$benchstat\")"
}

if [ "${1:-}" = -s ]; then
	summarise "${2:?usage: $0 -s DIR}"
	exit 0
fi

rounds=${ROUNDS:-10}
benchtime=${BENCHTIME:-1s}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-pgx.XXXXXX")}
mkdir -p "$out"
: >"$out/all.txt"
extra=(-bench.pgx.synchronous_commit "${SYNC_COMMIT:-off}" -bench.warmup "${WARMUP:-200ms}")
[ "${CANCELABLE:-0}" = 1 ] && extra+=(-bench.cancelable)

echo "building the benchmark binary ($root/bench)"
(cd "$root/bench" && go test -c -o "$out/bench.test" .)
{
	echo "# $(date -u +%FT%TZ) $(go version) GOMAXPROCS=${GOMAXPROCS:-$(nproc)} rounds=$rounds benchtime=$benchtime ${extra[*]}"
	echo "# server: $(psql "${UOWKIT_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}" -Atc 'SHOW server_version' 2>/dev/null || echo '?')," \
		"pgx $(cd "$root/bench" && go list -m -f '{{.Version}}' github.com/jackc/pgx/v5)," \
		"trm pgxv5 $(cd "$root/bench" && go list -m -f '{{.Version}}' github.com/avito-tech/go-transaction-manager/drivers/pgxv5/v2)"
	echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
	echo "# uowkit: $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?') $(cd "$root" && git status --porcelain 2>/dev/null | grep -q . && echo '(with uncommitted changes)')," \
		"sources sha256 $(cd "$root" && find uow uowpgx internal -name '*.go' ! -name '*_test.go' | sort | xargs cat | sha256sum | cut -c1-12)"
} >"$out/header.txt"
for impl in "${impls[@]}"; do : >"$out/$impl.txt"; done

for ((r = 0; r < rounds; r++)); do
	order=("${impls[@]}")
	if ((r % 2)); then order=(PgxTrm PgxUowkit PgxHand); fi
	echo "round $((r + 1))/$rounds: ${order[*]}"
	for impl in "${order[@]}"; do
		"$out/bench.test" -test.run '^$' -test.bench "^Benchmark$impl\$" -test.count 1 \
			-test.benchmem -test.benchtime "$benchtime" "${extra[@]}" >"$out/run.txt" 2>&1 ||
			{ cat "$out/run.txt"; exit 1; }
		if ! grep -q "^Benchmark$impl/" "$out/run.txt"; then
			echo "no results from $impl (no PostgreSQL?):"; cat "$out/run.txt"; exit 1
		fi
		grep '^Benchmark' "$out/run.txt" | tee -a "$out/$impl.txt" >>"$out/all.txt"
		if ! grep -q '^goos:' "$out/$impl.txt.head" 2>/dev/null; then
			grep -E '^(goos|goarch|pkg|cpu):' "$out/run.txt" >"$out/$impl.txt.head" || true
		fi
	done
done
for impl in "${impls[@]}"; do
	cat "$out/$impl.txt.head" "$out/$impl.txt" >"$out/$impl.tmp" && mv "$out/$impl.tmp" "$out/$impl.txt"
	rm -f "$out/$impl.txt.head"
done
rm -f "$out/run.txt"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" >>"$out/header.txt"

summarise "$out"
