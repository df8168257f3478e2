#!/usr/bin/env bash
# Starts (creating it if needed) a streaming replica of the local PostgreSQL
# cluster (127.0.0.1:5432): a Debian cluster named NAME (default "replica")
# on 127.0.0.1:PORT (default 5433), made with pg_basebackup, in hot standby,
# with a physical replication slot uowkit_NAME on the primary. Idempotent;
# run as root (it acts as the postgres user). .ci/run starts two:
#   scripts/pg-replica.sh                 # replica  on 5433
#   scripts/pg-replica.sh replica2 5434   # replica2 on 5434
# The tests use them through internal/pgtest (ReplicaURL, Replica2URL).
set -euo pipefail
name=${1:-replica}
port=${2:-5433}
version=$(ls /etc/postgresql | sort -V | tail -n 1)
conf=/etc/postgresql/$version/$name
data=/var/lib/postgresql/$version/$name
slot=uowkit_$name
as_pg() { su postgres -c "$*"; }
log() { printf '== %s: %s\n' "$name" "$*"; }

in_recovery() {
	[ "$(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc 'select pg_is_in_recovery()' 2>/dev/null)" = t ]
}

streaming() {
	[ "$(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc 'select status from pg_stat_wal_receiver' 2>/dev/null)" = streaming ]
}

# A healthy replica streams; one that lost its place in the primary's WAL
# (stopped too long without the slot below) never will again: rebuild it.
rebuild=
if in_recovery; then
	for _ in $(seq 1 20); do
		streaming && exit 0
		sleep 0.5
	done
	log "in recovery but not streaming: rebuilding it"
	rebuild=1
fi

# The primary must let the replica stream its WAL.
hba=$(psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'show hba_file')
if ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
	log "allowing replication connections from 127.0.0.1 on the primary"
	sed -i '1i host replication all 127.0.0.1/32 trust' "$hba"
	psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select pg_reload_conf()' >/dev/null
fi

if [ -n "$rebuild" ] || [ ! -f "$data/standby.signal" ]; then
	if [ -d "$conf" ]; then
		pg_ctlcluster --skip-systemctl-redirect "$version" "$name" stop >/dev/null 2>&1 || true
	else
		log "creating cluster $version/$name on port $port"
		pg_createcluster "$version" "$name" -p "$port" >/dev/null
	fi
	log "pg_basebackup from 127.0.0.1:5432"
	# A physical replication slot keeps the WAL the replica has not yet
	# received (the tests stop it, and pause its replay, for a while).
	psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
		"select pg_drop_replication_slot('$slot') from pg_replication_slots where slot_name = '$slot'" >/dev/null
	mkdir -p "$data"
	find "$data" -mindepth 1 -delete
	chown postgres:postgres "$data"
	chmod 700 "$data"
	as_pg "pg_basebackup -h 127.0.0.1 -p 5432 -U postgres -D $data -R -X stream -c fast -C -S $slot"
	# Trust local TCP connections, as on the primary.
	cp "$hba" "$conf/pg_hba.conf"
	chown postgres:postgres "$conf/pg_hba.conf"
fi

log "starting"
pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start || true
for _ in $(seq 1 60); do
	in_recovery && streaming && break
	sleep 1
done
if ! in_recovery || ! streaming; then
	echo "the replica on 127.0.0.1:$port did not come up streaming in hot standby" >&2
	tail -n 20 "/var/log/postgresql/postgresql-$version-$name.log" >&2 || true
	exit 1
fi
log "streaming on 127.0.0.1:$port"
