#!/usr/bin/env bash
# `make demo`: starts the AWS emulator (moto) and the ephemera daemon with the shipped
# example config on free loopback ports, walks through the lease lifecycle, then keeps
# serving until Ctrl-C (or exits at once with DEMO_SERVE=0). Stops only what it started.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/ephemera"
MOTO="$REPO/.venv/bin/moto_server"
WORK=$(mktemp -d -t ephemera-demo.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "$1"; }
wait_for() { # url, what
    for _ in $(seq 1 200); do
        http_get "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "demo: $2 did not come up; logs in $WORK" >&2
    exit 1
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*" >&2; "$@"; }

MOTO_PORT=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$MOTO_PORT/moto-api/" "moto"

API_PORT=$(free_port)
sed -e "s|^listen = \"127.0.0.1:9477\"|listen = \"127.0.0.1:$API_PORT\"|" \
    -e "s|^# endpoint_url = .*|endpoint_url = \"http://127.0.0.1:$MOTO_PORT\"|" \
    -e "s|^# emulator = true.*|emulator = true|" \
    -e "s|^path = \"state/ephemera.db\"|path = \"$WORK/ephemera.db\"|" \
    -e "s|^dir = \"rules\"|dir = \"$REPO/rules\"|" \
    "$REPO/ephemera.example.toml" >"$WORK/ephemera.toml"

step "The shipped example config and rules check out"
show "$BIN" config check --config "$WORK/ephemera.toml"
show "$BIN" rules test --config "$WORK/ephemera.toml"

"$BIN" daemon --config "$WORK/ephemera.toml" 2>"$WORK/daemon.log" &
PIDS+=($!)
ADDR="http://127.0.0.1:$API_PORT"
wait_for "$ADDR/readyz" "the daemon"
export EPHEMERA_ADDR="$ADDR"
echo "daemon on $ADDR (emulated AWS on 127.0.0.1:$MOTO_PORT), store $WORK/ephemera.db"

step "A CI job of project web takes a lease; it gets the tags to put on what it creates"
export EPHEMERA_TOKEN=demo-ci-web-token
show "$BIN" lease acquire --project web --task "build 1042" --owner alice@example.com --ttl 2h --format env | tee "$WORK/lease.env"
# shellcheck disable=SC1091
source "$WORK/lease.env"
show "$BIN" lease acquire --project web --task "preview pr-7" --owner bob@example.com \
    --heartbeat-interval 10m --label pr=7 --region eu-west-1 --format terraform
PREVIEW_ID=$("$BIN" lease acquire --project web --task "nightly load test" --owner carol@example.com \
    --ttl 8h --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["ephemera:lease-id"])')

step "Policy says no: a TTL above the project's max, a project the runner may not lease"
show "$BIN" lease acquire --project web --task "soak" --owner alice@example.com --ttl 3d || true
show "$BIN" lease acquire --project data --task "etl" --owner alice@example.com || true

step "Heartbeat, renew, and look at the leases"
show "$BIN" lease heartbeat "$EPHEMERA_LEASE_ID" >/dev/null && echo "heartbeat ok"
show "$BIN" lease renew "$EPHEMERA_LEASE_ID" --ttl 4h --output json | grep -E '"(expires_at|state)"'
show "$BIN" lease list

step "The job ends and releases its lease"
show "$BIN" lease release "$EPHEMERA_LEASE_ID" | grep -E '^(state|released_at)'
EPHEMERA_TOKEN=demo-viewer-token show "$BIN" lease list --state released

step "Meanwhile, in the (emulated) cloud: resources of both leases, and some strays"
tags() { printf '{"ephemera:lease-id": "%s", "ephemera:project": "web", "ephemera:task": "%s", "ephemera:owner": "%s"}' "$1" "$2" "$3"; }
"$REPO/.venv/bin/python" "$REPO/tests/peers/seed.py" --endpoint "http://127.0.0.1:$MOTO_PORT" >/dev/null <<SPEC
{"resources": [
  {"key": "load-test", "type": "ec2:volume", "region": "us-east-1", "count": 3, "tags": $(tags "$PREVIEW_ID" "nightly load test" carol@example.com)},
  {"key": "leftover", "type": "ec2:volume", "region": "eu-west-1", "count": 2, "tags": $(tags "$EPHEMERA_LEASE_ID" "build 1042" alice@example.com)},
  {"key": "leftover-queue", "type": "sqs:queue", "region": "us-east-1", "tags": $(tags "$EPHEMERA_LEASE_ID" "build 1042" alice@example.com)},
  {"key": "orphan", "type": "dynamodb:table", "region": "us-east-1", "tags": $(tags 0194e0a1-0000-7000-8000-00000000dead "old job" dave@example.com)},
  {"key": "no-owner", "type": "ec2:snapshot", "region": "eu-west-1", "tags": {"ephemera:project": "web", "team": "web"}},
  {"key": "kept", "type": "s3:bucket", "region": "us-east-1", "tags": {"ephemera:protect": "shared state"}}
]}
SPEC
echo "seeded 9 resources in 2 regions"

step "An audit pass: inventory, reconcile with the leases, open findings"
export EPHEMERA_TOKEN=demo-operator-token
show "$BIN" scan --wait
show "$BIN" findings

step "What Prometheus scrapes from $ADDR/metrics"
http_get "$ADDR/metrics" | grep -E '^ephemera_(leases|resources|walks_total|findings_opened_total)[{ ]' | grep -v ' 0$' | sort

if [[ "${DEMO_SERVE:-1}" != "0" && -t 0 ]]; then
    step "Still serving. Try (in another terminal):"
    echo "  export EPHEMERA_ADDR=$ADDR EPHEMERA_TOKEN=demo-operator-token"
    echo "  $BIN lease list"
    echo "  $BIN findings --verdict released"
    echo "  $BIN status"
    echo "  curl $ADDR/metrics"
    echo "Ctrl-C stops the daemon and the emulator."
    wait "${PIDS[1]}"
fi
