#!/usr/bin/env bash
# Issue 29: the dry run of ROWS people from a local folder (`sync --dry-run --force --json`,
# the minimal SCIM responder as the platform), for each binary given, alternating, RUNS
# rounds: per binary the median and range of wall time, CPU (user + sys) and peak RSS. Each
# binary has its own state file; every binary's `--json` output must be the same (compared
# without `run_id` and `duration_ms`), or the script fails. Alternating in one session is
# the comparison that holds on a noisy VM.
#
#   scripts/bench_dry_run.sh [ROWS] [RUNS] [BINARY…]    (defaults 1000000 7 target/release/rostersync)
#
# Needs: python3, /usr/bin/time. Run with nothing else building or testing.
set -euo pipefail

ROWS=${1:-1000000}
RUNS=${2:-7}
shift $(( $# > 2 ? 2 : $# ))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib/loopback.sh
WORK=$(mktemp -d /tmp/rostersync-dry-run.XXXXXX)
on_exit "rm -rf $WORK"

echo "building rostersync and scim_bench (release)…" >&2
nice cargo build -q --release --bin rostersync --example scim_bench
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=("$ROOT/target/release/rostersync")

CACHE=${BENCH_CACHE:-/tmp/rostersync-bench-data}
mkdir -p "$CACHE" "$WORK/in"
[ -s "$CACHE/day1-$ROWS.csv" ] || python3 scripts/gen_hris.py "$ROWS" > "$CACHE/day1-$ROWS.csv"
cp "$CACHE/day1-$ROWS.csv" "$WORK/in/employees.csv"

PORT=$(free_port)
"$ROOT/target/release/examples/scim_bench" serve "$PORT" & SERVER=$!
track_pid $SERVER
wait_port "$PORT" "scim_bench serve"
export PLATFORM_SCIM_TOKEN=bench-token

for i in "${!BINS[@]}"; do
  cat > "$WORK/c$i.toml" <<CFG
[platform]
kind = "scim"
base_url = "http://127.0.0.1:$PORT"
token_env = "PLATFORM_SCIM_TOKEN"

[state]
url = "sqlite://$WORK/state$i/rostersync.db"

[connectors.bench]
customer = "Bench"
schedule = "daily 02:00"
mapping = "$ROOT/mappings/demo.toml"

[connectors.bench.local]
dir = "$WORK/in"

[connectors.bench.file]
path = "employees.csv"
min_age = "0s"

[connectors.bench.sync]
max_invalid = "10%"
CFG
done

echo "rows $ROWS, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$RUNS"); do
  for i in "${!BINS[@]}"; do
    /usr/bin/time -f "$i %e %U %S %M" -a -o "$WORK/times" "${BINS[$i]}" --config "$WORK/c$i.toml" --json sync bench --dry-run --force > "$WORK/out$i.json"
    sed -E 's/"run_id":"[^"]*"//; s/"duration_ms":[0-9]+//' "$WORK/out$i.json" | sha256sum | cut -d' ' -f1 > "$WORK/sum$i"
    cmp -s "$WORK/sum$i" "$WORK/sum0" || { echo "FAIL: ${BINS[$i]}'s --json differs from ${BINS[0]}'s" >&2; exit 1; }
  done
done
python3 - "$WORK/times" "${BINS[@]}" <<'PY'
import collections, os, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    i, wall, user, sys_, kb = line.split()
    runs[int(i)].append((float(wall), float(user) + float(sys_), int(kb) / 1024))
for i, b in enumerate(sys.argv[2:]):
    col = lambda k: sorted(r[k] for r in runs[i])
    w, c, m = col(0), col(1), col(2)
    print(f"{b}: {len(w)} runs; wall {statistics.median(w):.2f} s ({w[0]:.2f}–{w[-1]:.2f}), "
          f"CPU {statistics.median(c):.2f} s ({c[0]:.2f}–{c[-1]:.2f}), peak {statistics.median(m):.0f} MiB ({m[0]:.0f}–{m[-1]:.0f})")
print(f"load after: {os.getloadavg()[0]:.2f}")
PY
