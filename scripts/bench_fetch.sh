#!/usr/bin/env bash
# SFTP fetch throughput: rostersync's source vs OpenSSH `sftp -b`, same file, same server,
# same run; on loopback and through a delay proxy adding ~20 ms round trip.
#
#   scripts/bench_fetch.sh [ROWS] [RUNS] [ONE_WAY_DELAY_MS]     (defaults 1000000 5 10)
#
# Needs: /usr/sbin/sshd, sftp, ssh-keygen, hyperfine, python3, root (sshd privilege separation).
# Prints a markdown table to paste into BENCHMARKS.md.
set -euo pipefail

ROWS=${1:-1000000}
RUNS=${2:-5}
DELAY=${3:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/rostersync-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for bin in /usr/sbin/sshd sftp ssh-keygen hyperfine python3; do
  command -v "$bin" >/dev/null || { echo "missing $bin (apt-get install -y openssh-server openssh-client hyperfine python3)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

echo "building examples/fetch_bench (release)…" >&2
(cd "$ROOT" && cargo build -q --release --example fetch_bench)
BENCH="$ROOT/target/release/examples/fetch_bench"

mkdir -p "$WORK/data" /run/sshd
FILE="$WORK/data/export.csv"
python3 "$ROOT/scripts/gen_hris.py" "$ROWS" > "$FILE"
SIZE=$(stat -c %s "$FILE")
MIB=$(python3 -c "print($SIZE/1048576)")

ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client"
cp "$WORK/client.pub" "$WORK/authorized_keys"
PORT=$(free_port)
cat > "$WORK/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_ed25519
PidFile none
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $WORK/authorized_keys
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2>"$WORK/sshd.log" &
PIDS+=($!)
wait_port "$PORT"

PIN=$(ssh-keygen -lf "$WORK/host_ed25519.pub" | awk '{print $2}')
PPORT=$(free_port)
"$BENCH" proxy "$PPORT" "$PORT" "$DELAY" &
PIDS+=($!)
wait_port "$PPORT"

echo "get $FILE /dev/null" > "$WORK/batch"
ours() { echo "$BENCH fetch $1 $WORK/client $PIN $FILE"; }
openssh() {
  printf '[127.0.0.1]:%s %s\n' "$1" "$(cut -d' ' -f1,2 "$WORK/host_ed25519.pub")" > "$WORK/known_hosts_$1"
  echo "sftp -q -b $WORK/batch -i $WORK/client -P $1 -o UserKnownHostsFile=$WORK/known_hosts_$1 -o StrictHostKeyChecking=yes -o BatchMode=yes root@127.0.0.1"
}

# Both clients once before timing: a broken setup fails here, loudly.
$(ours "$PORT") >&2
$(openssh "$PORT") >/dev/null

median() { python3 -c "import json,sys; r=json.load(open('$1'))['results']; print(' '.join(str(x['median']) for x in r))"; }

echo "| path | file | runs | rostersync median | OpenSSH sftp median | ratio |"
echo "|---|---|---|---|---|---|"
for case in "loopback:$PORT" "loopback+$((2*DELAY)) ms RTT:$PPORT"; do
  name=${case%%:*}; port=${case##*:}
  hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$WORK/h.json" "$(ours "$port")" "$(openssh "$port")" >&2
  read -r t_ours t_ssh < <(median "$WORK/h.json")
  python3 - "$name" "$MIB" "$RUNS" "$t_ours" "$t_ssh" <<'EOF'
import sys
name, mib, runs, a, b = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
print(f"| {name} | {mib:.0f} MiB | {runs} | {a:.2f} s = {mib/a:.0f} MiB/s | {b:.2f} s = {mib/b:.0f} MiB/s | {b/a:.2f}× |")
EOF
done
