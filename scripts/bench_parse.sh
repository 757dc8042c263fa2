#!/usr/bin/env bash
# Parse + map + validate benchmark (BENCHMARKS.md, "Parse and map"): a 1M-row CSV from
# scripts/gen_hris.py and a 300k-row xlsx, each with and without keeping the users, under
# /usr/bin/time -v for peak memory. Needs python3 and openpyxl (for the xlsx):
#   python3 -m venv /tmp/venv && /tmp/venv/bin/pip install openpyxl && PY=/tmp/venv/bin/python scripts/bench_parse.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DIR=${BENCH_DIR:-/tmp/rostersync-bench}
mkdir -p "$DIR"
[ -s "$DIR/hris_1m.csv" ] || python3 scripts/gen_hris.py 1000000 > "$DIR/hris_1m.csv"
[ -s "$DIR/hris_300k.xlsx" ] || "$PY" scripts/gen_xlsx.py 300000 "$DIR/hris_300k.xlsx"
cargo build --release --example parse_bench
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for f in "$DIR/hris_1m.csv" "$DIR/hris_300k.xlsx"; do
  for mode in "" "--parse-only"; do
    /usr/bin/time -v target/release/examples/parse_bench "$f" $mode 2>&1 \
      | grep -E "rows/s|User time|System time|Percent of CPU|Elapsed|Maximum resident"
  done
done
