#!/usr/bin/env bash
# Installs what the tests and the demo need, when missing: OpenSSH (sshd + sftp), rclone, curl,
# Chromium (the status page test), faketime (a worker's moved clock), GnuPG (OpenPGP exports), systemd (systemd-analyze), the OpenSSL headers libssh2
# builds against, PostgreSQL (the fleet's state store), and the two SCIM servers (PyPI, pinned) in .venv: scim2-server, and
# django-scim2 with the Django it runs on (tests/support/django_scim), and aiosmtpd (the SMTP server of tests/exchange.rs).
# Safe to run again: it only installs what is not there.
# `--demo`: only what scripts/demo.sh needs (OpenSSH, curl, python3-venv, scim2-server): no
# PostgreSQL, Chromium, rclone or Django for a first look.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_ONLY=false
[ "${1:-}" = "--demo" ] && DEMO_ONLY=true

SCIM2_SERVER_VERSION="0.8.3"
DJANGO_SCIM2_VERSION="0.23.0"
DJANGO_VERSION="5.2.19"  # the LTS line; Django 6 needs Python 3.12

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v sftp >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# rclone serves SFTP with a password and no system account (password-auth tests).
$DEMO_ONLY || command -v rclone >/dev/null 2>&1 || missing+=(rclone)
# PostgreSQL: the fleet's state store (tests/support/postgres.rs runs initdb + postgres itself).
$DEMO_ONLY || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# libfaketime moves a worker's clock (tests/fleet.rs: a worker 20 s fast, a CLI 200 days fast).
$DEMO_ONLY || [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(faketime)
# openssl (the CLI) makes the CA and server certificate of the TLS PostgreSQL (tests/pg_tls.rs).
$DEMO_ONLY || command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# GnuPG makes the OpenPGP exports of tests/pgp.rs (encrypted, signed, altered).
$DEMO_ONLY || command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
# tests/status_page.rs renders the daemon's status page in headless Chromium.
$DEMO_ONLY || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# tests/packaging.rs checks packaging/rostersync.service with `systemd-analyze verify`.
$DEMO_ONLY || command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing with apt-get: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# sshd's privilege separation folder (a fresh container may lack it).
[ -d /run/sshd ] || { mkdir -p /run/sshd 2>/dev/null || sudo mkdir -p /run/sshd; }

if [ ! -x .venv/bin/scim2-server ] || ! .venv/bin/pip show scim2-server 2>/dev/null | grep -q "^Version: ${SCIM2_SERVER_VERSION}$"; then
  if ! python3 -m venv .venv 2>/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -qq python3-venv >/dev/null && python3 -m venv .venv
  fi
  echo "installing scim2-server ${SCIM2_SERVER_VERSION} into .venv/" >&2
  .venv/bin/pip install -q "scim2-server==${SCIM2_SERVER_VERSION}"
fi
if $DEMO_ONLY; then exit 0; fi
# aiosmtpd: the SMTP server that receives the customer notices of tests/exchange.rs.
AIOSMTPD_VERSION="1.4.6"
if ! .venv/bin/pip show aiosmtpd 2>/dev/null | grep -q "^Version: ${AIOSMTPD_VERSION}$"; then
  .venv/bin/pip install -q "aiosmtpd==${AIOSMTPD_VERSION}"
fi
if ! .venv/bin/pip show django-scim2 2>/dev/null | grep -q "^Version: ${DJANGO_SCIM2_VERSION}$" \
  || ! .venv/bin/pip show Django 2>/dev/null | grep -q "^Version: ${DJANGO_VERSION}$"; then
  .venv/bin/pip install -q "django-scim2==${DJANGO_SCIM2_VERSION}" "Django==${DJANGO_VERSION}"
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
