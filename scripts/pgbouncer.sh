#!/usr/bin/env bash
# Starts PgBouncer in transaction pooling mode (pool_mode = transaction) in
# front of the local PostgreSQL server (127.0.0.1:5432), listening on
# 127.0.0.1:${UOWKIT_PGBOUNCER_PORT:-6432}, with at most 4 server
# connections per database and user (default_pool_size = 4). It installs
# the distribution's package when pgbouncer is missing and writes a
# configuration of its own under /var/lib/uowkit-pgbouncer (the package's
# /etc/pgbouncer is left alone). Idempotent: it exits at once when that
# configuration already runs. Run as root; PgBouncer itself runs as the
# postgres user (it refuses root). .ci/run calls it; the tests reach it
# through internal/pgtest (PgBouncerURL), and docs/pgbouncer.md says why
# each setting is there.
set -euo pipefail
port=${UOWKIT_PGBOUNCER_PORT:-6432}
dir=/var/lib/uowkit-pgbouncer
ini=$dir/pgbouncer.ini
pidfile=$dir/pgbouncer.pid
log() { printf '== pgbouncer: %s\n' "$*"; }

if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
	log "installing PgBouncer"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq pgbouncer >/dev/null
	# Where the package's service started (systemd), it holds port 6432 with
	# the package's configuration: stop it, and keep it from starting again.
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet pgbouncer 2>/dev/null; then
		systemctl stop pgbouncer || true
		systemctl disable pgbouncer >/dev/null 2>&1 || true
	fi
fi
bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
version=$("$bin" --version | awk 'NR == 1 { print $2 }')

# max_prepared_statements (PgBouncer 1.21 and later) lets clients use
# protocol-level prepared statements in transaction mode; 1.18 has no such
# setting (and refuses unknown ones), so it is written only when known.
prepared=""
if [ "$(printf '%s\n' 1.21.0 "$version" | sort -V | head -n 1)" = 1.21.0 ]; then
	prepared="max_prepared_statements = 200"
fi

config=$(
	cat <<EOF
;; Written by scripts/pgbouncer.sh: uowkit's tests through a transaction pooler.
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
pidfile = $pidfile
logfile = $dir/pgbouncer.log
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 4
max_client_conn = 1000
server_reset_query =
ignore_startup_parameters = extra_float_digits
;; Every test database gets a pool of its own: idle server connections go
;; after 10 s, so that many pools do not use up the server's max_connections.
server_idle_timeout = 10
log_connections = 0
log_disconnections = 0
$prepared
EOF
)

answers() {
	psql -h 127.0.0.1 -p "$port" -U postgres -d pgbouncer -Atqc 'SHOW VERSION' >/dev/null 2>&1
}

# running: the process of our pidfile is alive (a killed one may linger as a
# zombie where nothing reaps orphans).
running() {
	local pid state
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "${state#Z}" = "$state" ]
}

if running && [ -f "$ini" ] && [ "$(cat "$ini")" = "$config" ] && answers; then
	exit 0
fi

mkdir -p "$dir"
printf '%s\n' "$config" >"$ini"
printf '"postgres" ""\n' >"$dir/userlist.txt"
chown -R postgres:postgres "$dir"
chmod 700 "$dir"

if running; then
	log "restarting (configuration changed, or not answering)"
	kill -TERM "$(cat "$pidfile")" # immediate shutdown
	for _ in $(seq 1 100); do
		running || break
		sleep 0.1
	done
fi

# A pidfile whose process is gone (or a zombie, which PgBouncer would take
# for a live instance) is stale.
running || rm -f "$pidfile"

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	echo "127.0.0.1:$port is taken by another process (the distribution's pgbouncer service?); stop it or set UOWKIT_PGBOUNCER_PORT" >&2
	exit 1
fi

log "starting PgBouncer $version on 127.0.0.1:$port (pool_mode = transaction, default_pool_size = 4)"
su postgres -s /bin/sh -c "ulimit -n 4096 2>/dev/null; exec $bin -d $ini"
for _ in $(seq 1 50); do
	answers && break
	sleep 0.2
done
if ! answers; then
	echo "PgBouncer does not answer on 127.0.0.1:$port" >&2
	tail -n 20 "$dir/pgbouncer.log" >&2 || true
	exit 1
fi
log "answering on 127.0.0.1:$port"
