#!/usr/bin/env bash
# Issue 29: the first sync of ROWS people from a local folder to the minimal SCIM responder
# (examples/scim_bench serve), for each binary given, alternating, RUNS rounds: wall time,
# user + sys CPU and peak RSS of rostersync, the responder's CPU, and its write count (which
# must equal the report's creates). Each run starts from an empty state and an emptied
# responder. Alternating in one session is the comparison that holds on a noisy VM.
#
#   scripts/bench_first_sync.sh [ROWS] [RUNS] [BINARY…]    (defaults 1000000 2 target/release/rostersync)
#
# Needs: python3, curl, /usr/bin/time. Run with nothing else building or testing.
set -euo pipefail

ROWS=${1:-1000000}
RUNS=${2:-2}
shift $(( $# > 2 ? 2 : $# ))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib/loopback.sh
source scripts/lib/local_bench.sh
WORK=$(mktemp -d /tmp/rostersync-first-sync.XXXXXX)
on_exit "rm -rf $WORK"

BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=("$ROOT/target/release/rostersync")
local_bench_start "$ROWS" "$WORK"
local_bench_config "$WORK/state" "$WORK" > "$WORK/connectors.toml"

server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
echo "rows $ROWS, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$RUNS"); do
  for bin in "${BINS[@]}"; do
    rm -rf "$WORK/state"
    curl -sS -X POST "http://127.0.0.1:$PORT/_bench/reset" >/dev/null
    before=$(server_ticks)
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$bin" --config "$WORK/connectors.toml" --json sync bench > "$WORK/report.json"
    after=$(server_ticks)
    read -r wall user sys kb < "$WORK/time"
    posts=$(curl -sS "http://127.0.0.1:$PORT/_bench/writes" | python3 -c "import json,sys; print(json.load(sys.stdin)['POST'])")
    created=$(python3 -c "import json; print(json.load(open('$WORK/report.json'))['counts']['created'])")
    [ "$posts" = "$created" ] || { echo "FAIL: $posts POSTs for $created creates" >&2; exit 1; }
    python3 - "$bin" "$round" "$wall" "$user" "$sys" "$kb" "$((after - before))" "$(getconf CLK_TCK)" "$created" <<'PY'
import os, sys
b, r, wall, user, sys_, kb, ticks, hz, created = sys.argv[1:]
print(f"{b} round {r}: {float(wall):6.1f} s wall, {float(user) + float(sys_):5.1f} s CPU ({user} user + {sys_} sys), "
      f"{int(kb) // 1024} MiB peak; responder {int(ticks) / int(hz):.1f} s CPU; {created} creates = POSTs; load {os.getloadavg()[0]:.2f}")
PY
  done
done
