#!/usr/bin/env bash
# Sets up the test peers on a fresh machine: a virtualenv with pinned moto[server] and
# aiosmtpd (tests/peers/requirements.txt, every transitive version pinned by
# tests/peers/constraints.txt). Idempotent: does nothing when the venv is current.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
STAMP="$VENV/.installed"
REQ=tests/peers/requirements.txt
CON=tests/peers/constraints.txt

if [[ -f "$STAMP" && "$STAMP" -nt "$REQ" && "$STAMP" -nt "$CON" ]]; then
    exit 0
fi

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
