#!/usr/bin/env bash
# `make demo`: starts the AWS emulator (moto), an SMTP server and the ephemera daemon (unarmed,
# with the shipped example config and rules) on free loopback ports; seeds a small estate (3
# projects, 20 leases, about 200 resources over 2 regions and 2 accounts in every verdict, 30
# days of spend); runs a pass and a cost refresh; prints findings by verdict, the deletion plan
# and spend by project; then keeps serving the API and /metrics until Ctrl-C (or exits at once
# with DEMO_SERVE=0). Stops only what it started.
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

SMTP_PORT=$(free_port)
mkdir -p "$WORK/mail"
"$REPO/.venv/bin/python" "$REPO/tests/peers/smtp_server.py" --port "$SMTP_PORT" --dir "$WORK/mail" \
    >"$WORK/smtp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q READY "$WORK/smtp.log" 2>/dev/null && break; sleep 0.1; done

API_PORT=$(free_port)
sed -e "s|^listen = \"127.0.0.1:9477\"|listen = \"127.0.0.1:$API_PORT\"|" \
    -e "s|^# endpoint_url = .*|endpoint_url = \"http://127.0.0.1:$MOTO_PORT\"|" \
    -e "s|^# emulator = true.*|emulator = true|" \
    -e "s|^path = \"state/ephemera.db\"|path = \"$WORK/ephemera.db\"|" \
    -e "s|^dir = \"rules\"|dir = \"$REPO/rules\"|" \
    -e "s|^port = 25$|port = $SMTP_PORT|" \
    "$REPO/ephemera.example.toml" >"$WORK/ephemera.toml"
grep -q "^port = $SMTP_PORT$" "$WORK/ephemera.toml" || { echo "demo: the example config's [smtp] port moved" >&2; exit 1; }

# Prometheus (Debian's, installed by `make peers`) scraping the daemon with the shipped alerting and
# recording rules, so the dashboards in dashboards/ have a data source to point at.
PROM_PORT=$(free_port)
cat >"$WORK/prometheus.yml" <<PROM
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $REPO/rules/prometheus/*.yml
scrape_configs:
  - job_name: ephemera
    static_configs:
      - targets: ["127.0.0.1:$API_PORT"]
PROM
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

step "The shipped example config and rules check out"
show "$BIN" config check --config "$WORK/ephemera.toml"
show "$BIN" rules test --config "$WORK/ephemera.toml" | tail -n 1

"$BIN" daemon --config "$WORK/ephemera.toml" 2>"$WORK/daemon.log" &
PIDS+=($!)
ADDR="http://127.0.0.1:$API_PORT"
wait_for "$ADDR/readyz" "the daemon"
export EPHEMERA_ADDR="$ADDR"
echo "daemon on $ADDR, unarmed (emulated AWS on 127.0.0.1:$MOTO_PORT, SMTP on 127.0.0.1:$SMTP_PORT)"
echo "store $WORK/ephemera.db, logs in $WORK"

step "A task runner's view: take a lease, get the tags to put on what the task creates"
export EPHEMERA_TOKEN=demo-ci-web-token
show "$BIN" lease acquire --project web --task "smoke test" --owner alice@example.com --ttl 1h --format env | tee "$WORK/lease.env"
# shellcheck disable=SC1091
source "$WORK/lease.env"
show "$BIN" lease heartbeat "$EPHEMERA_LEASE_ID" >/dev/null && echo "heartbeat ok"
show "$BIN" lease acquire --project web --task "soak" --owner alice@example.com --ttl 3d || true
show "$BIN" lease release "$EPHEMERA_LEASE_ID" | grep -E '^(state|released_at)'

step "An estate: 20 tasks in 3 projects took leases and left resources behind; some strays"
"$REPO/.venv/bin/python" "$REPO/scripts/demo_estate.py" seed --api "$ADDR" --moto "http://127.0.0.1:$MOTO_PORT"

step "An audit pass: inventory both accounts and regions, reconcile with the leases, open findings"
export EPHEMERA_TOKEN=demo-operator-token
show "$BIN" scan --wait
show "$BIN" status

step "Spend from Cost Explorer (canned in the emulator: 30 days)"
show "$BIN" cost --refresh --by project

step "Summary: resources and open findings by verdict"
"$REPO/.venv/bin/python" "$REPO/scripts/demo_estate.py" summary --api "$ADDR"

step "The deletion plan (unarmed: at its deadline each is recorded as would-delete, nothing is deleted)"
show "$BIN" plan | head -n 12
echo "($("$BIN" plan --output json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["items"]))') marked in all)"

step "Mail the owners and on-call got"
for _ in $(seq 1 50); do ls "$WORK/mail"/*.json >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$WORK/mail" <<'PY'
import collections, json, pathlib, sys
kinds = collections.Counter(json.loads(p.read_text())["kind"] for p in pathlib.Path(sys.argv[1]).glob("*.json"))
print(", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none yet (mail goes out after each pass)")
PY

step "What Prometheus scrapes from $ADDR/metrics (a few of its series)"
http_get "$ADDR/metrics" >"$WORK/metrics.txt"
grep -E '^ephemera_(expired_resource_hours|waste_usd|marked_resources|walks_total|findings_opened_total|spend_usd\{.*window="30d")' \
    "$WORK/metrics.txt" | grep -v ' 0$' | sort
echo "... $(grep -c '^ephemera_' "$WORK/metrics.txt") series in all; dashboards/ has the Grafana dashboards for them"

wait_for "http://127.0.0.1:$PROM_PORT/-/ready" "Prometheus"
for _ in $(seq 1 100); do
    http_get "http://127.0.0.1:$PROM_PORT/api/v1/query?query=up" | grep -q '"value"' && break
    sleep 0.2
done
echo "Prometheus on http://127.0.0.1:$PROM_PORT scrapes it every 5 s with rules/prometheus/ loaded:"
http_get "http://127.0.0.1:$PROM_PORT/api/v1/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
alerts = [r for r in rules if r["type"] == "alerting"]
active = ", ".join(sorted({r["name"] for r in alerts if r["state"] != "inactive"})) or "none"
print(f"  {len(rules) - len(alerts)} recording rules, {len(alerts)} alerts; active now: {active}")'

echo
echo "Try next (in another terminal):"
echo "  export EPHEMERA_ADDR=$ADDR EPHEMERA_TOKEN=demo-operator-token"
echo "  $BIN findings --verdict expired       # what outlived its lease"
echo "  $BIN findings --verdict unknown-lease # leases nobody knows"
echo "  $BIN plan                             # what would be deleted, in which order, when"
echo "  $BIN cost --by task --since 7d"
echo "  $BIN lease list --state active"
echo "  curl $ADDR/metrics                    # what Prometheus scrapes"
echo "  open http://127.0.0.1:$PROM_PORT/alerts   # the alerts; add it to Grafana as a data source for dashboards/"

if [[ "${DEMO_SERVE:-1}" != "0" && -t 0 ]]; then
    echo
    echo "Still serving. Ctrl-C stops the daemon, Prometheus, the SMTP server and the emulator."
    wait "${PIDS[3]}"
fi
