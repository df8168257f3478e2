#!/usr/bin/env bash
# Measurements of the example service (examples/webapp) under wrk, for the
# notes of issues 12 and 14. No thresholds: it prints what it measured.
#
#   scripts/bench-webapp.sh lag       # end-to-end lag, COMMIT to projection
#   scripts/bench-webapp.sh outbox    # join throughput: the service vs cmd/handwritten
#   scripts/bench-webapp.sh replicas  # GET throughput: primary only vs REPLICA_URLS
#   scripts/bench-webapp.sh           # all three
#
# lag: the service on a fresh PostgreSQL database with NATS_URL (default
#   nats://127.0.0.1:4222; the stream WEBAPP must not exist there, and is
#   deleted at the end), 100 teams made through the API, then wrk drives
#   joins (70%) and moves (30%) for DURATION (scripts/bench-webapp-writes.lua).
#   Once the projector has caught up, PostgreSQL computes, for every event,
#   the projector's inbox INSERT time minus the outbox INSERT time (both
#   clock_timestamp() on the primary, docs/architecture.md "Measuring"), and
#   prints p50, p90, p99 and max, with wrk's requests/s, and for comparison
#   the relay's part (the outbox's delivered_at minus recorded_at: marked
#   delivered after the PubAck). Repeated LAG_RUNS
#   times (default 1), each on a fresh database and stream.
# outbox: scripts/loadtest.sh (POST /teams/{id}/players: the service, whose
#   joins record an outbox row that its relay publishes to its embedded NATS
#   and its projector applies, against cmd/handwritten, which records the
#   same outbox row and runs no relay, no NATS and no projector), with
#   ROUNDS and DURATION.
# replicas: one fresh database with 100 teams of 5 players (made through the
#   API, projected, and replayed on both replicas), then the same service
#   binary alternately with REPLICA_URLS (127.0.0.1:5433 and :5434) and
#   without (primary only), ROUNDS times each, the order swapped every round;
#   wrk -t THREADS -c (2 per core) GET /teams/{id} for DURATION
#   (scripts/bench-webapp-reads.lua). It prints every run, the transactions
#   each replica committed during it (pg_stat_database; they prove where the
#   reads went), and the medians and their ratio.
#
# Needs PostgreSQL on PGHOST:PGPORT (default 127.0.0.1:5432, user postgres,
# trust), its hot-standby replicas on 5433 and 5434 (scripts/pg-replica.sh),
# NATS with JetStream at NATS_URL (lag only), psql, curl and Go; installs
# wrk with apt-get when it is missing.
# Settings (environment): DURATION (20s), ROUNDS (3), THREADS (2),
# CONNECTIONS (32, lag), READ_CONNECTIONS (2 per core), LAG_RUNS (1),
# PORT (18091), NATS_URL, REPLICA_PORTS ("5433 5434").
set -euo pipefail

what=${1:-all}
duration=${DURATION:-20s}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
connections=${CONNECTIONS:-32}
read_connections=${READ_CONNECTIONS:-$((2 * $(nproc)))}
lag_runs=${LAG_RUNS:-1}
port=${PORT:-18091}
nats_url=${NATS_URL:-nats://127.0.0.1:4222}
replica_ports=${REPLICA_PORTS:-"5433 5434"}
teams=100
export TEAMS=$teams
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres} PGOPTIONS="-c client_min_messages=warning"
db=uowkit_bench_webapp
url="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable"

here=$(cd "$(dirname "$0")" && pwd)
bin=$(mktemp -d)
pid=
stream_made=

# js_api sends a JetStream API request (subject $JS.API.$1, empty body) to
# the NATS server at nats_url over /dev/tcp and prints the JSON reply.
js_api() {
	local hostport=${nats_url#nats://} line n=
	hostport=${hostport##*@}
	exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}"
	IFS= read -r -t 5 line <&3 # INFO
	printf 'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.bench_webapp 1\r\nPUB $JS.API.%s _INBOX.bench_webapp 0\r\n\r\nPING\r\n' "$1" >&3
	while IFS= read -r -t 5 line <&3; do
		line=${line%$'\r'}
		case $line in
		MSG*) n=1 ;;
		PING) printf 'PONG\r\n' >&3 ;;
		PONG | "") ;;
		*) if [ -n "$n" ]; then
			echo "$line"
			break
		fi ;;
		esac
	done
	exec 3>&-
}

stream_exists() { ! js_api STREAM.INFO.WEBAPP | grep -q '"error"'; }

delete_stream() {
	js_api STREAM.DELETE.WEBAPP | grep -q '"success":true'
}

stop() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	pid=
}

cleanup() {
	stop
	if [ -n "$stream_made" ]; then
		delete_stream || echo "could not delete the stream WEBAPP at $nats_url" >&2
	fi
	psql -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fresh_db() { psql -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null; }

q() { psql -d "$db" -Atqc "$1"; }

# start runs the service binary with the environment given as arguments
# (NAME=value ...) and waits until it answers.
start() {
	env DATABASE_URL="$url" ADDR="127.0.0.1:$port" LOG_LEVEL=error "$@" "$bin/webapp" >"$bin/service.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 200); do
		curl -fs -o /dev/null "127.0.0.1:$port/healthz" && return 0
		kill -0 "$pid" 2>/dev/null || { echo "the service exited at start-up:" >&2; cat "$bin/service.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "the service does not answer" >&2
	exit 1
}

post() {
	curl -fsS -o /dev/null -XPOST -H 'Content-Type: application/json' -d "$2" "127.0.0.1:$port$1" ||
		{ echo "POST $1 $2 failed" >&2; exit 1; }
}

# caught_up waits (at most 120 s) until every event recorded is published
# and in the projector's inbox.
caught_up() {
	for _ in $(seq 1 1200); do
		[ "$(q "SELECT (SELECT count(*) FROM uowkit_outbox WHERE delivered_at IS NULL) = 0
			AND (SELECT count(*) FROM uowkit_outbox) = (SELECT count(*) FROM projection_inbox)")" = t ] && return 0
		sleep 0.1
	done
	echo "the projector has not caught up after 120 s" >&2
	exit 1
}

# wrk_run runs wrk with the given arguments; it prints the output and
# appends "requests/s non-2xx" to $bin/last.
wrk_run() {
	local out
	out=$(wrk "$@")
	echo "$out" >"$bin/wrk.out"
	local rps non2xx
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	[ -n "$rps" ] || { echo "no Requests/sec in wrk's output:" >&2; echo "$out" >&2; exit 1; }
	echo "$rps ${non2xx:-0}" >"$bin/last"
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if ! command -v wrk >/dev/null 2>&1; then
	echo "installing wrk" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq wrk >/dev/null
fi

cd "$here/../examples"
go build -o "$bin/webapp" ./webapp

lag() {
	echo "== lag: COMMIT to projection under wrk -t$threads -c$connections -d$duration (joins 70%, moves 30%, $teams teams), NATS at $nats_url; load average $(loadavg)"
	if stream_exists; then
		echo "the stream WEBAPP exists at $nats_url: someone else's? Delete it first (this script deletes the one it makes)" >&2
		exit 1
	fi
	for run in $(seq 1 "$lag_runs"); do
		fresh_db
		stream_made=1
		start NATS_URL="$nats_url"
		for i in $(seq 1 $teams); do post /teams "{\"name\":\"t$i\",\"capacity\":1000}"; done
		caught_up
		local from
		from=$(q "SELECT clock_timestamp()")
		wrk_run -t"$threads" -c"$connections" -d"$duration" -s "$here/bench-webapp-writes.lua" "http://127.0.0.1:$port"
		local backlog
		backlog=$(q "SELECT count(*) FROM uowkit_outbox o WHERE NOT EXISTS (SELECT 1 FROM projection_inbox i WHERE i.message_id = o.message_id)")
		caught_up
		read -r rps non2xx <"$bin/last"
		local stats
		stats=$(q "SELECT count(*),
				round((extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY i.received_at - o.recorded_at)) * 1000)::numeric, 2),
				round((extract(epoch FROM percentile_cont(0.9) WITHIN GROUP (ORDER BY i.received_at - o.recorded_at)) * 1000)::numeric, 2),
				round((extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY i.received_at - o.recorded_at)) * 1000)::numeric, 2),
				round((extract(epoch FROM max(i.received_at - o.recorded_at)) * 1000)::numeric, 2),
				round((count(*) / extract(epoch FROM max(o.recorded_at) - min(o.recorded_at)))::numeric, 1),
				round((extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY o.delivered_at - o.recorded_at)) * 1000)::numeric, 2),
				round((extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY o.delivered_at - o.recorded_at)) * 1000)::numeric, 2)
			FROM uowkit_outbox o JOIN projection_inbox i ON i.message_id = o.message_id
			WHERE o.recorded_at >= '$from'")
		IFS='|' read -r n p50 p90 p99 pmax eps d50 d99 <<<"$stats"
		printf 'run %d: %s req/s (non-2xx %s), %s events (%s/s); lag ms p50 %s p90 %s p99 %s max %s; of which recorded to marked published: p50 %s p99 %s; %s events not yet projected when wrk ended\n' \
			"$run" "$rps" "$non2xx" "$n" "$eps" "$p50" "$p90" "$p99" "$pmax" "$d50" "$d99" "$backlog"
		stop
		delete_stream || { echo "could not delete the stream WEBAPP" >&2; exit 1; }
		stream_made=
	done
	echo "load average after: $(loadavg)"
}

outbox() {
	echo "== outbox: scripts/loadtest.sh, ROUNDS=$rounds DURATION=$duration; load average $(loadavg)"
	ROUNDS=$rounds DURATION=$duration THREADS=$threads CONNECTIONS=$connections "$here/loadtest.sh"
	echo "load average after: $(loadavg)"
}

# replica_xacts prints the sum of the transactions committed in $db on the
# replicas.
replica_xacts() {
	local sum=0 p n
	for p in $replica_ports; do
		n=$(psql -p "$p" -d postgres -Atqc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'")
		sum=$((sum + n))
	done
	echo "$sum"
}

replicas() {
	local replica_urls= p
	for p in $replica_ports; do
		replica_urls=${replica_urls:+$replica_urls,}"postgres://$PGUSER@$PGHOST:$p/$db?sslmode=disable"
	done
	echo "== replicas: GET /teams/{id}, wrk -t$threads -c$read_connections -d$duration, R = REPLICA_URLS ($replica_ports), P = primary only, $rounds rounds; load average $(loadavg)"
	fresh_db
	start
	for i in $(seq 1 $teams); do
		post /teams "{\"name\":\"t$i\",\"capacity\":5}"
		for j in 1 2 3 4 5; do post "/teams/$i/players" "{\"name\":\"p$i-$j\"}"; done
	done
	caught_up
	stop
	local want
	want=$(q "SELECT count(*) FROM projection_inbox")
	for p in $replica_ports; do
		for _ in $(seq 1 600); do
			[ "$(psql -p "$p" -d "$db" -Atqc "SELECT count(*) FROM projection_inbox" 2>/dev/null)" = "$want" ] && break
			sleep 0.1
		done
		[ "$(psql -p "$p" -d "$db" -Atqc "SELECT count(*) FROM projection_inbox")" = "$want" ] || { echo "replica $p has not replayed the projection" >&2; exit 1; }
	done
	: >"$bin/replicas"
	for round in $(seq 1 "$rounds"); do
		if [ $((round % 2)) = 1 ]; then order="R P"; else order="P R"; fi
		for which in $order; do
			if [ "$which" = R ]; then start REPLICA_URLS="$replica_urls"; else start; fi
			curl -fs -o /dev/null "127.0.0.1:$port/teams/1"
			local before after
			before=$(replica_xacts)
			wrk_run -t"$threads" -c"$read_connections" -d"$duration" -s "$here/bench-webapp-reads.lua" "http://127.0.0.1:$port"
			after=$(replica_xacts)
			stop
			read -r rps non2xx <"$bin/last"
			printf 'round %d  %s  %10.1f req/s  non-2xx %s  replica transactions %d  load %s\n' "$round" "$which" "$rps" "$non2xx" $((after - before)) "$(loadavg)"
			echo "$which $rps" >>"$bin/replicas"
		done
	done
	local r pr
	r=$(awk '$1 == "R" {print $2}' "$bin/replicas" | median)
	pr=$(awk '$1 == "P" {print $2}' "$bin/replicas" | median)
	echo "median of $rounds: R (replicas) $r req/s, P (primary) $pr req/s, R/P $(awk -v a="$r" -v b="$pr" 'BEGIN {printf "%.3f", a / b}')"
}

case $what in
lag) lag ;;
outbox) outbox ;;
replicas) replicas ;;
all) lag; outbox; replicas ;;
*) echo "usage: $0 [lag|outbox|replicas|all]" >&2; exit 2 ;;
esac
