#!/usr/bin/env bash
# What a unit of work costs in CPU and allocations, with the I/O taken out:
# hand-written sqlx, uowkit and go-transaction-manager (trm) on a do-nothing
# database/sql driver (bench/, see bench/doc.go for the cases).
#
# Builds the test binary of bench/ once, then runs it ROUNDS times; in each
# round every implementation is a separate invocation (-test.bench selects
# one implementation), in forward order on even rounds and reversed on odd
# ones, so that drift (thermal, noisy neighbours) spreads over all of them
# instead of favouring one (-test.count does not interleave). Prints the
# medians per case and implementation, the ratios uowkit/hand-written and
# uowkit/trm, and, when benchstat can be run, its comparison too.
#
# Usage: scripts/bench-core.sh            run, then summarise
#        scripts/bench-core.sh -s DIR     summarise the runs kept in DIR
#
# Settings (environment): ROUNDS (10), BENCHTIME (200ms), OUT (directory for
# the raw output; default a new directory under ${TMPDIR:-/tmp}), CANCELABLE
# (1: run the database cases under a cancelable context, as a request's is),
# WARMUP (how long each case runs unmeasured first, default 20ms),
# BENCHSTAT (command; default "go run golang.org/x/perf/cmd/benchstat@latest",
# "none" to skip).
set -euo pipefail

impls=(Hand Uowkit Trm)

# summarise prints medians and ratios of the runs in directory $1.
summarise() {
	local dir=$1
	echo
	cat "$dir/header.txt" 2>/dev/null || true
	echo "medians of $(grep -c '^BenchmarkHand/1_INSERT' "$dir/all.txt") rounds ($dir/all.txt)"
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
	function us(ns) { return sprintf("%.2f µs", ns / 1000) }
	function cell(m, k) { return has(m, k) ? sprintf("%s, %g allocs", us(med(m, k)), med("allocs", k)) : "—" }
	function ratio(m, a, b) { return has(m, a) && has(m, b) ? sprintf("%.2f", med(m, a) / med(m, b)) : "—" }
	# pairwise: the median over rounds of the ratio within a round, whose two
	# runs were close in time; a check on ratio() when the machine is noisy.
	function pairwise(m, a, b,   x, y, n, i, l) {
		if (!has(m, a) || !has(m, b)) return "—"
		n = split(v[m, a], x, " "); split(v[m, b], y, " "); l = ""
		for (i = 1; i <= n; i++) l = l " " x[i] / y[i]
		return sprintf("%.2f", median(l))
	}
	function table(m, title,   i, c, h, u, r) {
		print title
		print ""
		print "| case, no I/O | hand-written | uowkit | trm | uowkit/hand | uowkit/trm |"
		print "|---|---|---|---|---|---|"
		for (i = 1; i <= nc; i++) {
			c = cases[i]; h = "Hand" SUBSEP c; u = "Uowkit" SUBSEP c; r = "Trm" SUBSEP c
			if (c == "no-DB_request") continue
			printf "| %s | %s | %s | %s | %s | %s |\n", c, cell(m, h), cell(m, u), cell(m, r), ratio(m, u, h), ratio(m, u, r)
		}
		print ""
		print "median of the per-round ratios (each round runs all implementations back to back):"
		for (i = 1; i <= nc; i++) {
			c = cases[i]; h = "Hand" SUBSEP c; u = "Uowkit" SUBSEP c; r = "Trm" SUBSEP c
			printf "  %-18s uowkit/hand %s  uowkit/trm %s\n", c, pairwise(m, u, h), pairwise(m, u, r)
		}
		print ""
	}
	/^Benchmark[A-Za-z]+\// {
		split($1, p, "/"); impl = substr(p[1], 10); c = p[2]; sub(/-[0-9]+$/, "", c)
		k = impl SUBSEP c
		for (i = 3; i <= NF; i++) {
			if ($i == "ns/op") v["ns", k] = v["ns", k] " " $(i-1)
			if ($i == "cpu-ns/op") v["cpu", k] = v["cpu", k] " " $(i-1)
			if ($i == "B/op") v["bytes", k] = v["bytes", k] " " $(i-1)
			if ($i == "allocs/op") v["allocs", k] = v["allocs", k] " " $(i-1)
		}
		if (!(c in seen)) { seen[c] = 1; found[++nf] = c }
	}
	END {
		nc = split("1_INSERT 5_INSERTs nested_savepoint empty_unit no-DB_request", cases, " ")
		for (i = 1; i <= nc; i++) known[cases[i]] = 1
		for (i = 1; i <= nf; i++) if (!(found[i] in known)) cases[++nc] = found[i]
		split("Hand Uowkit Trm", names, " ")

		table("ns", "wall time per op (ns/op), medians:")
		if (has("cpu", "Hand" SUBSEP "1_INSERT"))
			table("cpu", "process CPU time per op (cpu-ns/op, user+sys: not inflated by time spent descheduled), medians:")

		print "B/op (medians):"
		for (i = 1; i <= nc; i++) {
			printf "  %-18s", cases[i]
			for (j = 1; j <= 3; j++) { k = names[j] SUBSEP cases[i]; printf "  %-7s %7s", names[j], has("bytes", k) ? med("bytes", k) : "—" }
			print ""
		}
		print ""
		print "allocations and time per statement beyond the first, (5 INSERTs - 1 INSERT) / 4:"
		for (j = 1; j <= 3; j++) {
			a = names[j] SUBSEP "1_INSERT"; b = names[j] SUBSEP "5_INSERTs"
			if (has("ns", a) && has("ns", b))
				printf "  %-7s %.2f allocs, %.0f ns wall, %s ns cpu\n", names[j], (med("allocs", b) - med("allocs", a)) / 4, (med("ns", b) - med("ns", a)) / 4, has("cpu", a) ? sprintf("%.0f", (med("cpu", b) - med("cpu", a)) / 4) : "—"
		}
		h = "Hand" SUBSEP "no-DB_request"; u = "Uowkit" SUBSEP "no-DB_request"
		if (has("ns", h) && has("ns", u)) {
			print ""
			print "no-DB request through the streaming middleware (net/http, httptest recorder):"
			printf "  bare %s, %g allocs, %g B;  nethttp.Transaction %s, %g allocs, %g B\n", us(med("ns", h)), med("allocs", h), med("bytes", h), us(med("ns", u)), med("allocs", u), med("bytes", u)
			printf "  overhead: %+.2f µs wall", (med("ns", u) - med("ns", h)) / 1000
			if (has("cpu", h)) printf ", %+.2f µs cpu", (med("cpu", u) - med("cpu", h)) / 1000
			printf ", %+g allocs, %+g B (wall ratio %.2f)\n", med("allocs", u) - med("allocs", h), med("bytes", u) - med("bytes", h), med("ns", u) / med("ns", h)
		}
	}' "$dir/all.txt"

	local benchstat=${BENCHSTAT:-go run golang.org/x/perf/cmd/benchstat@latest}
	[ "$benchstat" = none ] && return 0
	# benchstat compares benchmarks of the same name: give all three one name.
	local impl
	for impl in "${impls[@]}"; do
		sed "s/^Benchmark$impl\//BenchmarkUnit\//" "$dir/$impl.txt" >"$dir/$impl.benchstat"
	done
	echo
	echo "benchstat, against hand-written (hand's no-DB_request is the bare handler):"
	if ! (cd "$dir" && $benchstat hand=Hand.benchstat uowkit=Uowkit.benchstat trm=Trm.benchstat); then
		echo "(benchstat could not be run: \"$benchstat\")"
		return 0
	fi
	echo
	echo "benchstat, uowkit against trm:"
	(cd "$dir" && $benchstat trm=Trm.benchstat uowkit=Uowkit.benchstat)
}

if [ "${1:-}" = -s ]; then
	summarise "${2:?usage: $0 -s DIR}"
	exit 0
fi

rounds=${ROUNDS:-10}
benchtime=${BENCHTIME:-200ms}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-core.XXXXXX")}
mkdir -p "$out"
: >"$out/all.txt"
extra=()
[ "${CANCELABLE:-0}" = 1 ] && extra=(-bench.cancelable)
extra+=(-bench.warmup "${WARMUP:-20ms}")

echo "building the benchmark binary ($root/bench)"
(cd "$root/bench" && go test -c -o "$out/bench.test" .)
{
	echo "# $(date -u +%FT%TZ) $(go version) GOMAXPROCS=${GOMAXPROCS:-$(nproc)} rounds=$rounds benchtime=$benchtime ${extra[*]}"
	echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
	echo "# uowkit: $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?') $(cd "$root" && git status --porcelain 2>/dev/null | grep -q . && echo '(with uncommitted changes)')," \
		"sources sha256 $(cd "$root" && find uow repo retry middleware/nethttp internal -name '*.go' ! -name '*_test.go' | sort | xargs cat | sha256sum | cut -c1-12)"
} >"$out/header.txt"
for impl in "${impls[@]}"; do : >"$out/$impl.txt"; done

for ((r = 0; r < rounds; r++)); do
	order=("${impls[@]}")
	if ((r % 2)); then order=(Trm Uowkit Hand); fi
	echo "round $((r + 1))/$rounds: ${order[*]}"
	for impl in "${order[@]}"; do
		"$out/bench.test" -test.run '^$' -test.bench "^Benchmark$impl\$" -test.count 1 \
			-test.benchmem -test.benchtime "$benchtime" "${extra[@]}" >"$out/run.txt" ||
			{ cat "$out/run.txt"; exit 1; }
		grep '^Benchmark' "$out/run.txt" | tee -a "$out/$impl.txt" >>"$out/all.txt"
		# keep benchstat's configuration lines once per file
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
