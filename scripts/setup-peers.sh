#!/usr/bin/env bash
# Sets up the test peers on a fresh machine: Debian's prometheus package (the server and
# promtool, for the dashboard and alert-rule tests), Debian's postgresql (the PostgreSQL store's
# tests) and a virtualenv with pinned moto[server]
# and aiosmtpd (tests/peers/requirements.txt, every transitive version pinned by
# tests/peers/constraints.txt). Idempotent: does nothing when both are current.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
STAMP="$VENV/.installed"
REQ=tests/peers/requirements.txt
CON=tests/peers/constraints.txt

apt_install() {
    if command -v apt-get >/dev/null; then
        echo "setup-peers: installing Debian packages: $*" >&2
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
        else
            sudo apt-get update -qq && sudo apt-get install -y -qq "$@" >/dev/null
        fi
    else
        echo "setup-peers: need $* but apt-get is not available" >&2
        exit 1
    fi
}

# The tests start their own Prometheus on a free loopback port. On a host run by systemd,
# installing the package also starts its service on :9090 for every interface: we stop and
# disable that service again, since we started it and nothing here uses it.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    apt_install --no-install-recommends prometheus
    if [[ -d /run/systemd/system ]]; then
        run_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
        run_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi

# The PostgreSQL store's tests start their own throwaway servers (scripts/with-postgres.sh and
# tests/it/support/postgres.rs): they need initdb and pg_ctl, not a running cluster. Installing
# the package starts Debian's default cluster where systemd runs; we stop and disable it again.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install --no-install-recommends postgresql
    if [[ -d /run/systemd/system ]]; then
        run_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
        run_root systemctl disable --now postgresql.service >/dev/null 2>&1 || true
    fi
fi

if [[ -f "$STAMP" && "$STAMP" -nt "$REQ" && "$STAMP" -nt "$CON" ]]; then
    exit 0
fi

# Debian's python3 ships venv and pip separately.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv python3-pip
fi

rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ" -c "$CON"
"$VENV/bin/moto_server" --help >/dev/null
# The SMTP peer of the mail tests (tests/peers/smtp_server.py) needs both.
"$VENV/bin/python" -c "import aiosmtpd, cryptography"
touch "$STAMP"
echo "setup-peers: $VENV ready ($("$VENV/bin/pip" show moto | grep ^Version))" >&2
