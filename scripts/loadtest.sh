#!/bin/bash
# Interleaved load runs: uowkit webapp vs hand-written baseline, fresh database each run.
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and wrk (apt-get install wrk).
set -e
here=$(cd "$(dirname "$0")" && pwd)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cd "$here/.."
go build -o "$bin/webapp" ./examples/webapp
go build -o "$bin/handwritten" ./examples/webapp/cmd/handwritten
for round in 1 2 3; do
  for which in webapp handwritten; do
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS loadtest WITH (FORCE)" -c "CREATE DATABASE loadtest" >/dev/null
    export DATABASE_URL='postgres://postgres@127.0.0.1:5432/loadtest?sslmode=disable'
    # schema and 200 teams of 1000 places
    LOG_LEVEL=error ADDR=127.0.0.1:18090 "$bin/webapp" 2>/dev/null & pid=$!
    until curl -s 127.0.0.1:18090/healthz >/dev/null; do sleep 0.1; done
    kill $pid; wait $pid 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -d loadtest -qc "INSERT INTO teams (name, capacity) SELECT 't'||g, 1000 FROM generate_series(1,200) g; INSERT INTO team_rosters (team_id, player_count) SELECT id, 0 FROM teams" >/dev/null
    if [ $which = webapp ]; then LOG_LEVEL=error ADDR=127.0.0.1:18090 "$bin/webapp" 2>/dev/null & pid=$!
    else ADDR=127.0.0.1:18090 "$bin/handwritten" >/dev/null 2>&1 & pid=$!; fi
    until curl -s -o /dev/null 127.0.0.1:18090/teams/1/players -XPOST -d '{"name":"warm"}'; do sleep 0.1; done
    out=$(wrk -t2 -c32 -d8s -s "$here/loadtest.lua" http://127.0.0.1:18090)
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    lat=$(echo "$out" | awk '/Latency/ {print $2}')
    echo "round $round $which rps=$rps latency_avg=$lat non2xx=${non2xx:-0}"
    kill $pid; wait $pid 2>/dev/null || true
  done
done
