#!/usr/bin/env bash
# Builds what a release ships, from one rostersync binary:
#   - a Debian package: the binary, the systemd unit, the sysusers file, the man page, the
#     bash/zsh/fish completions, the docs and an example configuration; its postinst creates
#     the service user (systemd-sysusers) and reloads systemd, without enabling the service;
#   - a release archive (tar.gz) with the same files in one folder.
#
#   scripts/package.sh [BINARY] [OUTDIR]
#     BINARY  default target/release/rostersync (build it with `cargo build --release --locked`)
#     OUTDIR  default target/package
#
# Why dpkg-deb and not cargo-deb: dpkg-deb is on every Debian machine (no extra tool to build
# or trust in CI), and the package's layout is written out here in plain view; the files it
# takes are the ones tests/packaging.rs checks (the unit with systemd-analyze, the man page
# fresh, the completions from the same binary).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="${1:-target/release/rostersync}"
OUT="${2:-target/package}"
[ -x "$BIN" ] || { echo "no binary at $BIN; build it first: cargo build --release --locked" >&2; exit 2; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT

# --- the Debian package's tree
D="$WORK/deb"
install -D -m 0755 "$BIN" "$D/usr/bin/rostersync"
# Without debug sections (a release build keeps line tables for profiling; a debug build is
# ~300 MB of them): what a package ships is the program.
if command -v strip >/dev/null 2>&1; then strip --strip-debug "$D/usr/bin/rostersync"; fi
install -D -m 0644 packaging/rostersync.service "$D/usr/lib/systemd/system/rostersync.service"
install -D -m 0644 packaging/rostersync.sysusers "$D/usr/lib/sysusers.d/rostersync.conf"
install -d "$D/usr/share/man/man1"
gzip -9n < packaging/rostersync.1 > "$D/usr/share/man/man1/rostersync.1.gz"
install -d "$D/usr/share/bash-completion/completions" "$D/usr/share/zsh/vendor-completions" "$D/usr/share/fish/vendor_completions.d"
"$BIN" completions bash > "$D/usr/share/bash-completion/completions/rostersync"
"$BIN" completions zsh > "$D/usr/share/zsh/vendor-completions/_rostersync"
"$BIN" completions fish > "$D/usr/share/fish/vendor_completions.d/rostersync.fish"
DOC="$D/usr/share/doc/rostersync"
install -d "$DOC/docs" "$DOC/examples/mappings"
install -m 0644 README.md CONFIG.md CHANGELOG.md "$DOC/"
install -m 0644 docs/*.md "$DOC/docs/"
install -m 0644 connectors.toml "$DOC/examples/connectors.toml"
install -m 0644 mappings/*.toml "$DOC/examples/mappings/"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: rostersync"
  echo
  echo "Files: *"
  echo "License: MIT or Apache-2.0"
  echo
  cat LICENSE-MIT
} > "$DOC/copyright"
chmod 0644 "$DOC/copyright"

install -d "$D/DEBIAN"
cat > "$D/DEBIAN/control" <<CTL
Package: rostersync
Version: $VERSION
Architecture: $ARCH
Maintainer: rostersync maintainers <maintainers@rostersync.invalid>
Section: admin
Priority: optional
Depends: libc6, libssl3, zlib1g
Recommends: systemd
Installed-Size: $(du -sk "$D" | cut -f1)
Description: keeps a platform's users in step with customers' HR exports
 rostersync fetches each customer's HR export (CSV, Excel, JSON) from their SFTP
 server, maps its columns onto the platform's user model and pushes creates,
 updates and deactivations to the platform's SCIM 2.0 API, on a schedule or on
 demand. The rostersync.service unit runs the schedules.
CTL
cat > "$D/DEBIAN/postinst" <<'SH'
#!/bin/sh
# The service user, and systemd told about the unit; the service is not enabled: it needs
# /etc/rostersync/connectors.toml first (see /usr/share/doc/rostersync/README.md).
set -e
if [ "$1" = configure ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then systemd-sysusers rostersync.conf || true; fi
  install -d -m 0750 /etc/rostersync
  if getent group rostersync >/dev/null 2>&1; then chgrp rostersync /etc/rostersync; fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
SH
cat > "$D/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
SH
chmod 0755 "$D/DEBIAN/postinst" "$D/DEBIAN/postrm"
DEB="$OUT/rostersync_${VERSION}_${ARCH}.deb"
# DEB_COMPRESSION=gzip: faster, for tests; xz is what Debian ships.
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$D" "$DEB" >/dev/null
echo "$DEB"

# --- the release archive: the same files under one folder
NAME="rostersync-${VERSION}-$(uname -m)-linux"
A="$WORK/$NAME"
install -D -m 0755 "$D/usr/bin/rostersync" "$A/rostersync"
install -m 0644 README.md CONFIG.md CHANGELOG.md LICENSE-MIT LICENSE-APACHE "$A/"
cp -r "$DOC/docs" "$A/docs"
install -d "$A/packaging" "$A/completions" "$A/examples/mappings"
install -m 0644 packaging/rostersync.service packaging/rostersync.sysusers packaging/rostersync.1 "$A/packaging/"
cp "$D/usr/share/bash-completion/completions/rostersync" "$A/completions/rostersync.bash"
cp "$D/usr/share/zsh/vendor-completions/_rostersync" "$A/completions/_rostersync"
cp "$D/usr/share/fish/vendor_completions.d/rostersync.fish" "$A/completions/rostersync.fish"
install -m 0644 connectors.toml "$A/examples/connectors.toml"
install -m 0644 mappings/*.toml "$A/examples/mappings/"
TAR="$OUT/$NAME.tar.gz"
tar -C "$WORK" --owner=0 --group=0 --sort=name -czf "$TAR" "$NAME"
echo "$TAR"
