#!/usr/bin/env bash
# Load comparison of POST /teams/{id}/players: A, the uowkit example service
# (examples/webapp), against B, the same endpoint written by hand
# (examples/webapp/cmd/handwritten). Rounds alternate A,B / B,A, each run on a
# fresh database with 200 teams of 1000 places; the script prints every run
# and, at the end, the median requests/s of A and of B and their ratio.
#
# What A does beyond B, besides uowkit's bookkeeping: it holds each response
# in the middleware's buffer until the unit is decided, and its pool is
# opened on a uow.Guard connector. Both record the join's event in the same
# transaction, with the same outbox INSERT; B stops there (its rows stay in
# the outbox), while A, in the same process and on the same cores, runs the
# rest of its CQRS pipeline: the outbox's relay, woken by LISTEN/NOTIFY,
# publishes each event to the JetStream stream WEBAPP on a NATS server
# embedded in the process (no NATS_URL) and marks it delivered, and the
# projector consumes it and applies it to the read model through the inbox
# (one more transaction per event). Its retry policy never fires here (no
# deadlock or serialization failure in this workload). A's teams are made
# through its API (POST /teams), so that the projector knows them; B's with
# SQL.
#
# Needs PostgreSQL (PGHOST/PGPORT/PGUSER, default 127.0.0.1:5432 postgres,
# trust auth), psql, curl and Go; installs wrk with apt-get when it is missing.
#
# Settings (environment): ROUNDS (5), DURATION (8s), THREADS (2),
# CONNECTIONS (32), PORT (18090), WRK (wrk).
set -euo pipefail

rounds=${ROUNDS:-5}
duration=${DURATION:-8s}
threads=${THREADS:-2}
connections=${CONNECTIONS:-32}
port=${PORT:-18090}
wrk=${WRK:-wrk}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres} PGOPTIONS="-c client_min_messages=warning"
db=uowkit_loadtest
url="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable"

here=$(cd "$(dirname "$0")" && pwd)
bin=$(mktemp -d)
results=$bin/results
pid=

cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	psql -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v "$wrk" >/dev/null 2>&1; then
	echo "installing wrk" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq wrk >/dev/null
fi

# Both live in the examples module (examples/go.mod): built from there, they
# build with or without the workspace (go.work).
cd "$here/../examples"
go build -o "$bin/A" ./webapp
go build -o "$bin/B" ./webapp/cmd/handwritten

# start runs server A or B on a fresh, seeded database and waits until it
# answers.
start() {
	psql -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
	# Both servers apply the schema at start-up. Errors only: A logs every
	# request at Info.
	DATABASE_URL=$url ADDR=127.0.0.1:$port LOG_LEVEL=error "$bin/$1" >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do
		curl -fs -o /dev/null "127.0.0.1:$port/healthz" && break
		kill -0 "$pid" 2>/dev/null || { echo "server $1 exited at start-up" >&2; exit 1; }
		sleep 0.1
	done
	curl -fs -o /dev/null "127.0.0.1:$port/healthz" || { echo "server $1 does not answer" >&2; exit 1; }
	if [ "$1" = A ]; then
		for i in $(seq 1 200); do
			curl -fs -o /dev/null -XPOST -H 'Content-Type: application/json' -d "{\"name\":\"t$i\",\"capacity\":1000}" "127.0.0.1:$port/teams"
		done
	else
		psql -d "$db" -qc "INSERT INTO teams (name, capacity) SELECT 't' || g, 1000 FROM generate_series(1, 200) g;
			INSERT INTO team_rosters (team_id, player_count) SELECT id, 0 FROM teams" >/dev/null
	fi
	curl -fs -o /dev/null -XPOST -H 'Content-Type: application/json' -d '{"name":"warm"}' "127.0.0.1:$port/teams/1/players"
}

stop() {
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=
}

# measure runs wrk against server $2 in round $1 and records its requests/s.
measure() {
	start "$2"
	out=$("$wrk" -t"$threads" -c"$connections" -d"$duration" -s "$here/loadtest.lua" "http://127.0.0.1:$port")
	stop
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	lat=$(awk '$1 == "Latency" {print $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	errors=$(awk '/Socket errors/ {print $0}' <<<"$out")
	[ -n "$rps" ] || { echo "no Requests/sec in wrk's output:" >&2; echo "$out" >&2; exit 1; }
	printf 'round %d  %s  %10.1f req/s  latency avg %-8s non-2xx %s %s\n' "$1" "$2" "$rps" "$lat" "${non2xx:-0}" "$errors"
	echo "$2 $rps" >>"$results"
}

echo "A = examples/webapp (uowkit), B = examples/webapp/cmd/handwritten; wrk -t$threads -c$connections -d$duration"
for round in $(seq 1 "$rounds"); do
	if [ $((round % 2)) = 1 ]; then order="A B"; else order="B A"; fi
	for which in $order; do
		measure "$round" "$which"
	done
done

median() { awk -v w="$1" '$1 == w {print $2}' "$results" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
a=$(median A)
b=$(median B)
echo "median of $rounds rounds: A $a req/s, B $b req/s, A/B $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}')"
