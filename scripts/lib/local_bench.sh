# What the 1M benches on a local folder share (sourced after scripts/lib/loopback.sh, from
# the repository's root): the export, the minimal SCIM responder, and the config.
#
#   local_bench_start ROWS WORK   builds rostersync and scim_bench (release), copies ROWS
#                                 people to WORK/in/employees.csv (generated once into
#                                 $BENCH_CACHE, default /tmp/rostersync-bench-data), starts
#                                 `scim_bench serve` → PORT, SERVER; exports PLATFORM_SCIM_TOKEN
#   local_bench_config STATE WORK the connectors.toml of connector "bench" on stdout, its
#                                 SQLite state in the folder STATE

local_bench_start() {
  local rows=$1 work=$2
  echo "building rostersync and scim_bench (release)…" >&2
  nice cargo build -q --release --bin rostersync --example scim_bench
  local cache=${BENCH_CACHE:-/tmp/rostersync-bench-data}
  mkdir -p "$cache" "$work/in"
  [ -s "$cache/day1-$rows.csv" ] || python3 scripts/gen_hris.py "$rows" > "$cache/day1-$rows.csv"
  cp "$cache/day1-$rows.csv" "$work/in/employees.csv"
  PORT=$(free_port)
  target/release/examples/scim_bench serve "$PORT" & SERVER=$!
  track_pid $SERVER
  wait_port "$PORT" "scim_bench serve"
  export PLATFORM_SCIM_TOKEN=bench-token
}

local_bench_config() {
  local state=$1 work=$2
  cat <<CFG
[platform]
kind = "scim"
base_url = "http://127.0.0.1:$PORT"
token_env = "PLATFORM_SCIM_TOKEN"

[state]
url = "sqlite://$state/rostersync.db"

[connectors.bench]
customer = "Bench"
schedule = "daily 02:00"
mapping = "$PWD/mappings/demo.toml"

[connectors.bench.local]
dir = "$work/in"

[connectors.bench.file]
path = "employees.csv"
min_age = "0s"

[connectors.bench.sync]
max_invalid = "10%"
CFG
}
