# Loopback servers for scripts (sourced, not run): a real OpenSSH sshd serving internal-sftp
# with its own host key and an authorized client key, and scim2-server with a bearer token.
# Both are stopped by the EXIT trap this file installs (callers add their own cleanup with
# `on_exit CMD`).
#
#   source scripts/lib/loopback.sh
#   start_sshd DIR      → SSH_PORT, HOST_KEY (SHA256:… to pin), CLIENT_KEY (private key path)
#   start_scim2 DIR     → SCIM_PORT, PLATFORM_SCIM_TOKEN (exported); needs .venv/bin/scim2-server
#   sftp_section NAME   → the [connectors.NAME.sftp] table for start_sshd's server

LOOPBACK_PIDS=()
LOOPBACK_EXIT=()
_loopback_cleanup() {
  for p in "${LOOPBACK_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for c in "${LOOPBACK_EXIT[@]}"; do eval "$c" || true; done
}
trap _loopback_cleanup EXIT
on_exit() { LOOPBACK_EXIT+=("$1"); }
# Remembers a background process started by the caller so the trap stops it.
track_pid() { LOOPBACK_PIDS+=("$1"); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "${2:-a server} did not start on port $1" >&2; exit 1
}

start_sshd() {
  local dir=$1
  mkdir -p "$dir/keys" /run/sshd 2>/dev/null || mkdir -p "$dir/keys"
  ssh-keygen -q -t ed25519 -N "" -f "$dir/keys/host_ed25519"
  ssh-keygen -q -t ed25519 -N "" -f "$dir/keys/client_ed25519"
  cp "$dir/keys/client_ed25519.pub" "$dir/keys/authorized_keys"
  chmod 600 "$dir/keys/"*
  SSH_PORT=$(free_port)
  cat > "$dir/sshd_config" <<CFG
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $dir/keys/host_ed25519
AuthorizedKeysFile $dir/keys/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile none
LogLevel ERROR
Subsystem sftp internal-sftp
CFG
  /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
  track_pid $!
  wait_port "$SSH_PORT" sshd
  HOST_KEY=$(ssh-keygen -l -f "$dir/keys/host_ed25519.pub" | awk '{print $2}')
  CLIENT_KEY="$dir/keys/client_ed25519"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$dir/keys/host_ed25519.pub")" > "$dir/keys/known_hosts"
}

# OpenSSH's own client downloading PATH from start_sshd's server to /dev/null (the reference).
sftp_get_cmd() {
  local dir=$1 path=$2
  echo "get $path /dev/null" > "$dir/sftp_batch"
  echo "sftp -q -b $dir/sftp_batch -i $CLIENT_KEY -P $SSH_PORT -o UserKnownHostsFile=$dir/keys/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes $(id -un)@127.0.0.1"
}

# The connectors.toml table logging connector NAME into start_sshd's server with its key
# (a path relative to the config's folder, which must be start_sshd's DIR).
sftp_section() {
  cat <<TOML
[connectors.$1.sftp]
host = "127.0.0.1"
port = $SSH_PORT
username = "$(id -un)"
auth = "key"
private_key = "keys/client_ed25519"
host_key = "$HOST_KEY"
TOML
}

start_scim2() {
  local dir=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  SCIM_PORT=$(free_port)
  export PLATFORM_SCIM_TOKEN="loopback-token-$RANDOM$RANDOM"
  # The schemas include rostersync's custom extension (attributes beyond core/enterprise).
  "$root/.venv/bin/scim2-server" --hostname 127.0.0.1 --port "$SCIM_PORT" --bearer-token "$PLATFORM_SCIM_TOKEN" \
    --schema "$root/tests/fixtures/scim/schemas.json" --resource-type "$root/tests/fixtures/scim/resource-types.json" >"$dir/scim.log" 2>&1 &
  track_pid $!
  wait_port "$SCIM_PORT" scim2-server
}
