#!/usr/bin/env bash
# Issue 17: a fleet — 3 `rostersync daemon` workers on one PostgreSQL, many connectors with
# small local exports on a short schedule, against a minimal SCIM responder.
#
#   scripts/bench_fleet.sh [CONNECTORS] [MINUTES] [EVERY_SECONDS]     (defaults 1000 3 30)
#   TTL=10 JITTER=10 WORKERS=3 scripts/bench_fleet.sh                   ([state] lease_ttl, connector jitter, s)
#   JITTER=600 WARMUP_LIMIT=2400 scripts/bench_fleet.sh 10000 10 600       (10,000 connectors' daily load, a
#                                                                        day compressed into 10 minutes)
#
# EVERY of a minute or more is a whole number of minutes (cron "0 */M * * * *").
#
# 1. warm-up: every connector's first sync (creates its users), with the database's load per
#    first sync; then the measured window:
#    runs per minute, runs that overlapped another run of their connector (must be 0), slots
#    run twice (must be 0), slots skipped; and the database's load per run from
#    pg_stat_statements and pg_stat_database deltas (statements, rows, execution time, commits);
# 2. failover: SIGKILL one worker a few seconds into a slot (runs in flight), then the time
#    from the kill to each of its unfinished slots running on another worker.
#
# The workers are the debug binary (dependencies at opt-level 2, Cargo.toml): the database
# figures do not depend on it; runs per minute is what the schedule asks, when it keeps up.
# Needs: PostgreSQL (Debian's postgresql), python3; root (PostgreSQL runs as `postgres`).
set -euo pipefail

N=${1:-1000}
MINUTES=${2:-3}
EVERY=${3:-30}
TTL=${TTL:-10}
JITTER=${JITTER:-10}
WORKERS=${WORKERS:-3}
WARMUP_LIMIT=${WARMUP_LIMIT:-900}
FAILOVER=${FAILOVER:-1}   # 0: skip step 2 (it waits a TTL and a period)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib/loopback.sh
trap "exit 143" TERM INT  # so the EXIT trap stops the servers and workers
WORK=$(mktemp -d /tmp/rostersync-fleet.XXXXXX)
on_exit "rm -rf $WORK"
chmod 755 "$WORK"  # the postgres user reaches its folder inside

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL is not installed: apt-get install -y postgresql (or scripts/install-test-deps.sh)" >&2; exit 1; }

echo "building rostersync and scim_bench (debug profile)…" >&2
nice cargo build -q --bin rostersync --example scim_bench
RS="$ROOT/target/debug/rostersync"

# --- PostgreSQL: initdb into $WORK, a free loopback port, run as `postgres`; default
# durability (fsync on) so the per-run cost is a real server's.
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi; }
PGPASSWORD_VALUE="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
mkdir -p "$WORK/pg"
printf '%s' "$PGPASSWORD_VALUE" > "$WORK/pg/pw"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth-host=scram-sha-256 --auth-local=trust --pwfile="$WORK/pg/pw" -E UTF8 --locale=C >/dev/null
PG_PORT=$(free_port)
as_pg "$PGBIN/postgres" -D "$WORK/pg/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$WORK/pg" \
  -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c max_connections=100 > "$WORK/pg/log" 2>&1 &
track_pid $!
for _ in $(seq 1 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.1; done
q() { "$PGBIN/psql" -X -q -A -t -F ' ' -v ON_ERROR_STOP=1 -h "$WORK/pg" -p "$PG_PORT" -U postgres -d "${DB:-fleet}" -c "$1"; }
DB=postgres q "CREATE DATABASE fleet" >/dev/null
q "CREATE EXTENSION pg_stat_statements" >/dev/null

# --- SCIM: the minimal responder (answers at once), so the platform is not the bottleneck.
SCIM_PORT=$(free_port)
"$ROOT/target/debug/examples/scim_bench" serve "$SCIM_PORT" >/dev/null 2>&1 &
track_pid $!
wait_port "$SCIM_PORT" scim_bench

# --- N connectors, each on its own folder with a 5-row export (distinct people).
python3 - "$WORK" "$N" "$EVERY" "$JITTER" "$ROOT/mappings/demo.toml" <<'PY'
import os, sys
work, n, every, jitter, mapping = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
head = "Personnel Number,First Name,Last Name,Email,Language,Active,Department,Job Title,Manager ID,Location,Hire Date,Cost Center\n"
out = []
# Seconds field for short periods; whole minutes otherwise (a seconds step stops at 59).
sched = f"*/{every} * * * * *" if every < 60 else f"0 */{every // 60} * * * *"
for c in range(n):
    d = f"{work}/exports/c{c:05}"
    os.makedirs(d)
    with open(f"{d}/employees_2026-01-01.csv", "w") as f:
        f.write(head)
        for i in range(5):
            f.write(f"E{c:05}{i:02},Ann{i},Lee{c},c{c}u{i}@example.com,fr,Yes,Engineering,Engineer,,Paris,2021-03-04,CC-1\n")
    out.append(f'''
[connectors.c{c:05}]
schedule = "{sched}"
jitter = "{jitter}s"
mapping = "{mapping}"
[connectors.c{c:05}.local]
dir = "{d}"
[connectors.c{c:05}.file]
path = "employees_*.csv"
pick = "last-name"
''')
open(f"{work}/connectors.part", "w").write("".join(out))
PY

config() { # TAG PORT
  cat > "$WORK/$1.toml" <<CFG
[platform]
kind = "scim"
base_url = "http://127.0.0.1:$SCIM_PORT"
token_env = "PLATFORM_SCIM_TOKEN"
bulk = "off"

[state]
url = "postgres://postgres@127.0.0.1:$PG_PORT/fleet"
password_file = "$WORK/pg/pw"
lease_ttl = "${TTL}s"

[daemon]
listen = "127.0.0.1:$2"
max_concurrent_runs = 8
grace = "30s"
CFG
  cat "$WORK/connectors.part" >> "$WORK/$1.toml"
}
export PLATFORM_SCIM_TOKEN=bench-token
PIDS=()
for w in $(seq 0 $((WORKERS - 1))); do
  port=$(free_port)
  config "w$w" "$port"
  RUST_LOG=rostersync=warn "$RS" --config "$WORK/w$w.toml" --log-format json daemon 2> "$WORK/w$w.log" &
  PIDS+=($!)
  track_pid $!
  # (A worker reads and checks the whole config first: 10,000 connectors take seconds.)
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  wait_port "$port" "worker w$w"
done
HOST=$(hostname)
echo "$WORKERS workers (pids ${PIDS[*]}), $N connectors every ${EVERY}s (jitter ${JITTER}s), lease_ttl ${TTL}s; PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT" >&2

# --- 1. warm-up, then the measured window.
start=$(date +%s)
until [ "$(q "SELECT count(DISTINCT connector) FROM runs WHERE ended_at IS NOT NULL")" -ge "$N" ]; do
  sleep 2
  [ $(( $(date +%s) - start )) -lt "$WARMUP_LIMIT" ] || { echo "warm-up: not every connector ran within ${WARMUP_LIMIT}s" >&2; exit 1; }
done
echo "warm-up: every connector synced once after $(( $(date +%s) - start ))s" >&2
# The warm-up's statements (pg_stat_statements counts from the server's start): the first
# syncs, each creating its 5 users, plus the no-new-file runs of connectors already done.
read -r wcalls wrows wms <<< "$(q "SELECT sum(calls), sum(rows), round(sum(total_exec_time)::numeric, 1) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'fleet'")"
read -r wruns wfirst <<< "$(q "SELECT count(*), count(*) FILTER (WHERE report::json->>'outcome' = 'ok') FROM runs")"
echo "warm-up: $wruns runs ($wfirst first syncs of 5 creates), $(python3 -c "print(f'{$wcalls/$wruns:.1f} statements, {$wrows/$wruns:.1f} rows, {$wms/$wruns:.3f} ms execution a run')")"
q "SELECT calls, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 90) FROM pg_stat_statements s
   JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'fleet' ORDER BY calls DESC LIMIT 14" | sed 's/^/  /'
echo "worker RSS after warm-up: $(for p in "${PIDS[@]}"; do ps -o rss= -p "$p"; done | awk '{printf "%d MiB ", $1/1024}')"
# Start on a slot boundary, so the window holds whole periods.
sleep $(( EVERY - $(date +%s) % EVERY ))
q "SELECT pg_stat_statements_reset()" >/dev/null
# CPU seconds of every PostgreSQL process (the pools' backends live through the window).
# (/proc/PID/stat utime + stime, in clock ticks: `ps` rounds each short-lived backend to 0 s.)
ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done | awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {printf "%.2f", s / hz}'; }
pg_cpu() { ticks $(pgrep -u postgres -f "postgres") ; }
wcpu() { ticks "${PIDS[@]}"; }
cpu0=$(pg_cpu); wcpu0=$(wcpu)
read -r c0 r0 i0 u0 d0 ret0 fet0 <<< "$(q "SELECT xact_commit + xact_rollback, 0, tup_inserted, tup_updated, tup_deleted, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = 'fleet'")"
t0=$(q "SELECT now()")
sleep $(( MINUTES * 60 ))
t1=$(q "SELECT now()")
cpu1=$(pg_cpu); wcpu1=$(wcpu)
read -r c1 r1 i1 u1 d1 ret1 fet1 <<< "$(q "SELECT xact_commit + xact_rollback, 0, tup_inserted, tup_updated, tup_deleted, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = 'fleet'")"
read -r calls rows exec_ms <<< "$(q "SELECT sum(calls), sum(rows), round(sum(total_exec_time)::numeric, 1) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'fleet'")"
W="started_at >= '$t0' AND started_at < '$t1'"
runs=$(q "SELECT count(*) FROM runs WHERE $W")
slots=$(q "SELECT count(*) FROM slots WHERE slot_at >= '$t0' AND slot_at < '$t1'")
by_worker=$(q "SELECT worker, count(*) FROM runs WHERE $W GROUP BY 1 ORDER BY 1" | tr '\n' ';')
outcomes=$(q "SELECT coalesce(report::json->>'outcome', 'unfinished'), count(*) FROM runs WHERE $W GROUP BY 1 ORDER BY 1" | tr '\n' ';')
overlaps=$(q "SELECT count(*) FROM runs a JOIN runs b ON a.connector = b.connector AND a.run_id < b.run_id
  AND a.started_at < coalesce(b.ended_at, 'infinity') AND b.started_at < coalesce(a.ended_at, 'infinity')
  WHERE a.started_at >= '$t0' AND a.started_at < '$t1'")
doubles=$(q "SELECT count(*) FROM (SELECT connector, floor(extract(epoch FROM started_at) / $EVERY) FROM runs WHERE $W GROUP BY 1, 2 HAVING count(*) > 1) d")
# Slots whose every start (slot + jitter < EVERY) falls in the window: the whole periods.
first=$(q "SELECT ceil(extract(epoch FROM timestamptz '$t0') / $EVERY)::bigint")
last=$(q "SELECT floor(extract(epoch FROM timestamptz '$t1') / $EVERY)::bigint - 1")
served=$(q "SELECT count(*) FROM (SELECT DISTINCT connector, floor(extract(epoch FROM started_at) / $EVERY) b FROM runs) r WHERE b BETWEEN $first AND $last")
expected=$(( N * (last - first + 1) ))
secs=$(q "SELECT round(extract(epoch FROM timestamptz '$t1' - timestamptz '$t0'))")
echo
echo "## window of ${secs}s"
echo "runs: $runs ($(( runs * 60 / secs ))/min; the schedule asks $(( N * 60 / EVERY ))/min); of the $expected slots of the window's whole periods, $served ran"
echo "runs by worker: $by_worker"
echo "outcomes: $outcomes"
echo "overlapping runs of one connector: $overlaps; slots run twice: $doubles"
echo "database, per run: $(python3 -c "r=$runs; print(f'{$calls/r:.1f} statements, {$rows/r:.1f} rows returned/affected, {$exec_ms/r:.3f} ms execution, {($c1-$c0)/r:.1f} transactions, {($i1-$i0)/r:.1f} inserted, {($u1-$u0)/r:.1f} updated, {($d1-$d0)/r:.1f} deleted, {($ret1-$ret0+$fet1-$fet0)/r:.0f} tuples read')")"
# Execution time includes waiting on row locks: the losers of a slot claim wait for the
# winner's commit (a WAL flush), which is not CPU.
echo "database, total: $calls statements, ${exec_ms} ms of statement time (lock waits included) over ${secs}s"
echo "CPU over the window: PostgreSQL $(python3 -c "print(f'{$cpu1-$cpu0:.0f} s = {($cpu1-$cpu0)/$secs*100:.1f} % of one core, {($cpu1-$cpu0)/$runs*1000:.2f} ms a run')"); the $WORKERS workers $(python3 -c "print(f'{$wcpu1-$wcpu0:.0f} s = {($wcpu1-$wcpu0)/$runs*1000:.1f} ms a run')")"
echo "tables: $(q "SELECT string_agg(relname || ' ' || n_live_tup || ' rows ' || pg_size_pretty(pg_total_relation_size(relid)), ', ' ORDER BY relname) FROM pg_stat_user_tables")"
echo "top statements by calls:"
q "SELECT calls, rows, round(total_exec_time::numeric, 1) AS ms, left(regexp_replace(query, '\s+', ' ', 'g'), 90) FROM pg_stat_statements s
   JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'fleet' ORDER BY calls DESC LIMIT 12" | sed 's/^/  /'

[ "$FAILOVER" = 1 ] || exit 0

# --- 2. failover: SIGKILL worker 0 during a slot's runs, at a moment it has some in flight
# (claimed, unfinished), or after 8 s of looking.
sleep $(( EVERY - $(date +%s) % EVERY ))
victim=${PIDS[0]}
for _ in $(seq 1 200); do
  [ "$(q "SELECT count(*) FROM slots WHERE worker = '$HOST pid $victim' AND done_at IS NULL")" -ge 1 ] && break
  sleep 0.02
done
kill -KILL "$victim"
tk=$(q "SELECT now()")
q "CREATE TABLE bench_inflight AS SELECT connector, slot_at FROM slots WHERE worker = '$HOST pid $victim' AND done_at IS NULL" >/dev/null
inflight=$(q "SELECT count(*) FROM bench_inflight")
leases=$(q "SELECT count(*) FROM leases WHERE holder LIKE 'daemon@$HOST pid $victim %' AND expires_at > now()")
echo
echo "## failover: SIGKILL of worker pid $victim at $tk: $inflight unfinished slot claims (its runs in flight), $leases live leases"
sleep $(( TTL + EVERY ))
q "SELECT count(*), round(min(d)::numeric, 2), round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d))::numeric, 2), round(max(d)::numeric, 2)
   FROM (SELECT i.connector, extract(epoch FROM min(r.started_at) - timestamptz '$tk') AS d
         FROM bench_inflight i JOIN runs r ON r.connector = i.connector AND r.started_at > '$tk' AND r.worker <> '$HOST pid $victim'
         GROUP BY i.connector) t" |
  { read -r n mn med mx; echo "of those, run on another worker: $n; kill → run there: min ${mn}s, median ${med}s, max ${mx}s (lease_ttl ${TTL}s)"; }
taken=$(q "SELECT count(*) FROM bench_inflight i JOIN slots s USING (connector, slot_at) WHERE s.done_at IS NOT NULL AND s.worker <> '$HOST pid $victim'")
echo "the dead worker's slots served by another worker: $taken of $inflight"
left=$(q "SELECT count(*) FROM slots WHERE worker = '$HOST pid $victim' AND done_at IS NULL")
echo "slots still held by the dead worker: $left (0: every one it held was taken over)"
dead=$(q "SELECT count(*) FROM runs WHERE worker = '$HOST pid $victim' AND ended_at IS NULL")
overlaps=$(q "SELECT count(*) FROM runs a JOIN runs b ON a.connector = b.connector AND a.run_id < b.run_id
  AND a.started_at < b.ended_at AND b.started_at < a.ended_at WHERE a.ended_at IS NOT NULL AND b.ended_at IS NOT NULL")
echo "runs the kill left unfinished: $dead; overlapping finished runs over the whole bench: $overlaps"
