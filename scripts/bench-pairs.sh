#!/usr/bin/env bash
# Paired benchmarks of package uow on the local PostgreSQL (with
# max_prepared_transactions > 0 and the replica on 5433):
#   TwoPhase/Plain vs TwoPhase/Atomic: a unit with one INSERT on each of two
#     databases, committed one after the other, or with a two-phase commit;
#   ResolveOutcomes/Off vs On: a one-INSERT Do, with and without reading the
#     transaction id before COMMIT;
#   ReadYourWrites/Off vs On: a one-INSERT Do on a source with a replica,
#     without and with a Consistency (the WAL position read after COMMIT).
# The test binary is built once; each pair runs alternately, in turn first,
# ROUNDS times (-test.count 1 each), and the medians and their ratio are
# printed. Usage: scripts/bench-2pc.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-8}
bin=$(mktemp -d)/uow.test
go test -c -o "$bin" ./uow
out=$(mktemp)
cd uow
run() {
	local res
	if ! res=$("$bin" -test.run '^$' -test.bench "$1\$" -test.benchtime "$2" -test.count 1 -test.benchmem 2>&1); then
		printf 'run of %s failed (left out of the medians):\n%s\n' "$1" "$res" >&2
		return
	fi
	grep '^Benchmark' <<<"$res" >>"$out"
}
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) -eq 0 ]; then
		run TwoPhase/Plain 300x; run TwoPhase/Atomic 300x
		run ResolveOutcomes/Off 500x; run ResolveOutcomes/On 500x
		run ReadYourWrites/Off 500x; run ReadYourWrites/On 500x
	else
		run TwoPhase/Atomic 300x; run TwoPhase/Plain 300x
		run ResolveOutcomes/On 500x; run ResolveOutcomes/Off 500x
		run ReadYourWrites/On 500x; run ReadYourWrites/Off 500x
	fi
done
awk '
	{ name=$1; sub(/-[0-9]+$/, "", name); v[name] = v[name] " " $3 }
	function median(list,   a, n, i, j, t) {
		n = split(list, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	END {
		for (k in v) m[k] = median(v[k])
		printf "%-40s %12s\n", "benchmark", "median ns/op"
		for (k in m) printf "%-40s %12.0f\n", k, m[k]
		printf "Atomic / Plain:  %.2f\n", m["BenchmarkTwoPhase/Atomic"] / m["BenchmarkTwoPhase/Plain"]
		printf "Resolve On / Off: %.2f\n", m["BenchmarkResolveOutcomes/On"] / m["BenchmarkResolveOutcomes/Off"]
		printf "ReadYourWrites On / Off: %.2f\n", m["BenchmarkReadYourWrites/On"] / m["BenchmarkReadYourWrites/Off"]
	}' "$out"
echo "raw results: $out"
