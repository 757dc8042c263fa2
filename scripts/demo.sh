#!/usr/bin/env bash
# A real sync, end to end, on this machine: a loopback OpenSSH sftp server holding the
# bundled example export, scim2-server as the platform, and the embedded SQLite state.
# Everything lives in .demo/ (recreated on each run) and the servers stop when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DEMO="$ROOT/.demo"

./scripts/install-test-deps.sh
cargo build -q --bin rostersync
RS="$ROOT/target/debug/rostersync"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "$2 did not start on port $1" >&2; exit 1; }

rm -rf "$DEMO"; mkdir -p "$DEMO/keys" "$DEMO/sftp/exports"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# --- the customer's SFTP server: real sshd, its own host key, our client key authorized
ssh-keygen -q -t ed25519 -N "" -f "$DEMO/keys/host_ed25519"
ssh-keygen -q -t ed25519 -N "" -f "$DEMO/keys/client_ed25519"
cp "$DEMO/keys/client_ed25519.pub" "$DEMO/keys/authorized_keys"
chmod 600 "$DEMO/keys/"*
cp examples/exports/*.csv "$DEMO/sftp/exports/"
SSH_PORT=$(free_port)
cat > "$DEMO/sshd_config" <<CFG
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $DEMO/keys/host_ed25519
AuthorizedKeysFile $DEMO/keys/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile none
LogLevel ERROR
Subsystem sftp internal-sftp
CFG
mkdir -p /run/sshd 2>/dev/null || true
/usr/sbin/sshd -D -e -f "$DEMO/sshd_config" 2>"$DEMO/sshd.log" & PIDS+=($!)
wait_port "$SSH_PORT" sshd
HOST_KEY=$(ssh-keygen -l -f "$DEMO/keys/host_ed25519.pub" | awk '{print $2}')

# --- the platform: scim2-server with a bearer token
SCIM_PORT=$(free_port)
export PLATFORM_SCIM_TOKEN="demo-token-$RANDOM$RANDOM"
# The schemas include the custom extension that carries attributes outside core/enterprise.
.venv/bin/scim2-server --hostname 127.0.0.1 --port "$SCIM_PORT" --bearer-token "$PLATFORM_SCIM_TOKEN" \
  --schema tests/fixtures/scim/schemas.json --resource-type tests/fixtures/scim/resource-types.json >"$DEMO/scim.log" 2>&1 & PIDS+=($!)
wait_port "$SCIM_PORT" scim2-server

# --- the connector, as an integration engineer would write it (ports and keys are this run's)
cat > "$DEMO/connectors.toml" <<CFG
[platform]
kind = "scim"
base_url = "http://127.0.0.1:$SCIM_PORT"
token_env = "PLATFORM_SCIM_TOKEN"

[state]
url = "sqlite://state/rostersync.db"

[connectors.demo]
customer = "Demo Corp"
schedule = "daily 02:00"
timezone = "Europe/Paris"
mapping = "../mappings/demo.toml"

[connectors.demo.sftp]
host = "127.0.0.1"
port = $SSH_PORT
username = "$(id -un)"
auth = "key"
private_key = "keys/client_ed25519"
host_key = "$HOST_KEY"

[connectors.demo.file]
path = "$DEMO/sftp/exports/employees_*.csv"
pick = "last-name"
min_age = "0s"
CFG

echo "== rostersync check"
"$RS" --config "$DEMO/connectors.toml" check
echo
echo "== rostersync sync demo   (sftp://127.0.0.1:$SSH_PORT → scim http://127.0.0.1:$SCIM_PORT)"
set +e
"$RS" --config "$DEMO/connectors.toml" sync demo
code=$?
set -e
echo "(exit code $code)"
echo
echo "== users now on the SCIM server"
curl -sS -H "Authorization: Bearer $PLATFORM_SCIM_TOKEN" "http://127.0.0.1:$SCIM_PORT/Users?count=1000" > "$DEMO/users.json"
python3 - "$DEMO/users.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
print(d.get("totalResults", 0), "users")
for u in sorted(d.get("Resources", []), key=lambda u: u.get("externalId", "")):
    n = u.get("name", {})
    state = "active" if u.get("active") else "inactive"
    print("  %-10s %-38s %-10s %-12s %-3s %-8s %s" % (u.get("externalId", ""), u.get("userName", ""), n.get("givenName", ""),
          n.get("familyName", ""), u.get("preferredLanguage", ""), state, u.get(ent, {}).get("department", "")))
PY
echo
echo "== the same file again: nothing to do"
"$RS" --config "$DEMO/connectors.toml" sync demo
echo
echo "== rostersync history"
"$RS" --config "$DEMO/connectors.toml" history
exit $code
