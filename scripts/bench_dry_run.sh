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
# GAP=SECONDS waits that long before each run. On a VM that hands freed memory back to its
# host (virtio free page reporting, as this project's), memory is "cold" a few seconds after
# it is freed and a transparent huge page costs ~2 ms per MiB to fault in again: back-to-back
# runs (GAP=0, the default) measure warm memory, GAP=8 the cold memory a scheduled run meets.
# Each run also reports the memory pages the system allocated while it ran (/proc/vmstat
# pgalloc_*, anonymous and page cache: the machine must be otherwise idle).
#
# Needs: python3, /usr/bin/time. Run with nothing else building or testing.
set -euo pipefail

ROWS=${1:-1000000}
RUNS=${2:-7}
shift $(( $# > 2 ? 2 : $# ))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib/loopback.sh
source scripts/lib/local_bench.sh
WORK=$(mktemp -d /tmp/rostersync-dry-run.XXXXXX)
on_exit "rm -rf $WORK"

BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=("$ROOT/target/release/rostersync")
local_bench_start "$ROWS" "$WORK"
# Each binary its own state.
for i in "${!BINS[@]}"; do
  local_bench_config "$WORK/state$i" "$WORK" > "$WORK/c$i.toml"
done

# Pages (4 KiB) the system has allocated since boot.
pgalloc() { awk '/^pgalloc_/ { n += $2 } END { print n }' /proc/vmstat; }

echo "rows $ROWS, gap ${GAP:-0} s, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$RUNS"); do
  for i in "${!BINS[@]}"; do
    sleep "${GAP:-0}"
    before=$(pgalloc)
    /usr/bin/time -f "$i %e %U %S %M" -o "$WORK/time1" "${BINS[$i]}" --config "$WORK/c$i.toml" --json sync bench --dry-run --force > "$WORK/out$i.json"
    echo "$(cat "$WORK/time1") $(( $(pgalloc) - before ))" >> "$WORK/times"
    sed -E 's/"run_id":"[^"]*"//; s/"duration_ms":[0-9]+//' "$WORK/out$i.json" | sha256sum | cut -d' ' -f1 > "$WORK/sum$i"
    cmp -s "$WORK/sum$i" "$WORK/sum0" || { echo "FAIL: ${BINS[$i]}'s --json differs from ${BINS[0]}'s" >&2; exit 1; }
  done
done
python3 - "$WORK/times" "${BINS[@]}" <<'PY'
import collections, os, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    i, wall, user, sys_, kb, pages = line.split()
    runs[int(i)].append((float(wall), float(user) + float(sys_), int(kb) / 1024, float(user), float(sys_), int(pages) * 4 / 1024))
for i, b in enumerate(sys.argv[2:]):
    col = lambda k: sorted(r[k] for r in runs[i])
    w, c, m, u, s, p = col(0), col(1), col(2), col(3), col(4), col(5)
    med = statistics.median
    print(f"{b}: {len(w)} runs; wall {med(w):.2f} s ({w[0]:.2f}–{w[-1]:.2f}), "
          f"CPU {med(c):.2f} s ({c[0]:.2f}–{c[-1]:.2f}; user {med(u):.2f}, sys {med(s):.2f}), "
          f"peak {med(m):.0f} MiB ({m[0]:.0f}–{m[-1]:.0f}), pages allocated {med(p):.0f} MiB ({p[0]:.0f}–{p[-1]:.0f})")
print(f"load after: {os.getloadavg()[0]:.2f}")
PY
