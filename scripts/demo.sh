#!/usr/bin/env bash
# A real sync, end to end, on this machine: a loopback OpenSSH sftp server holding the
# bundled example export, scim2-server as the platform, and the embedded SQLite state.
# Everything lives in .demo/ (recreated on each run) and the servers stop when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DEMO="$ROOT/.demo"

echo "== installing what the demo needs, when missing (OpenSSH, curl, scim2-server in .venv/)"
./scripts/install-test-deps.sh --demo
# The same dev profile as `cargo nextest run`: the test command after this reuses the build.
echo "== building rostersync (a first build compiles ~300 crates: about 10 minutes on 2 cores)"
cargo build --bin rostersync
RS="$ROOT/target/debug/rostersync"

source scripts/lib/loopback.sh
rm -rf "$DEMO"; mkdir -p "$DEMO/sftp/exports"
cp examples/exports/*.csv "$DEMO/sftp/exports/"

# --- the customer's SFTP server: real sshd, its own host key, our client key authorized
start_sshd "$DEMO"
# --- the platform: scim2-server with a bearer token
start_scim2 "$DEMO"

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

$(sftp_section demo)

[connectors.demo.file]
path = "$DEMO/sftp/exports/employees_*.csv"
pick = "last-name"
min_age = "0s"
CFG

echo "== rostersync check --online   (files, environment, then the SFTP server and the platform)"
"$RS" --config "$DEMO/connectors.toml" check --online
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
