#!/usr/bin/env python3
"""The estate of `make demo`: leases taken through the daemon's API, the resources their tasks
left in the emulator, strays, and 30 days of spend queued in moto's Cost Explorer.

Usage (from scripts/demo.sh, with the test virtualenv's python):
    demo_estate.py seed    --api URL --moto URL   # leases, resources, canned spend
    demo_estate.py summary --api URL              # resources and open findings by verdict

`seed` takes 20 leases in three projects (web, data, ml): active ones, some about to expire,
some whose heartbeat was missed (expired), some released. Each lease's task leaves a few
resources (EBS volumes, snapshots, SQS queues, S3 buckets, DynamoDB tables, an instance) in
two regions and two accounts; strays are added whose lease nobody knows, that miss an identity
tag, or that carry the protect tag. Every verdict of the audit pass occurs. The spend is
deterministic (a fixed seed), per task and region, with some untagged spend; tasks whose lease
ended keep spending a little, which is what `ephemera_waste_usd` shows.

Only ever talks to the two loopback URLs it is given.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The demo tokens of ephemera.example.toml (their hashes are in it; see the README).
CI_WEB = "demo-ci-web-token"
CI_DATA = "demo-ci-data-token"
OPERATOR = "demo-operator-token"
HOME, PREVIEW = "123456789012", "210987654321"
VERDICTS = ("leased", "protected", "expiring", "expired", "released", "unknown-lease", "untagged")
TAGS = ("ephemera:lease-id", "ephemera:project", "ephemera:task", "ephemera:owner")

# (project, task, owner, token, state, region, account)
# state: active | expiring | expired | released
LEASES = [
    ("web", "build 1042", "alice@example.com", CI_WEB, "active", "us-east-1", HOME),
    ("web", "build 1043", "alice@example.com", CI_WEB, "active", "eu-west-1", HOME),
    ("web", "preview pr-7", "bob@example.com", CI_WEB, "active", "us-east-1", PREVIEW),
    ("web", "preview pr-9", "bob@example.com", CI_WEB, "expiring", "eu-west-1", PREVIEW),
    ("web", "e2e nightly", "carol@example.com", CI_WEB, "expired", "us-east-1", HOME),
    ("web", "preview pr-4", "bob@example.com", CI_WEB, "expired", "eu-west-1", PREVIEW),
    ("web", "build 1039", "alice@example.com", CI_WEB, "released", "us-east-1", HOME),
    ("web", "load test", "carol@example.com", CI_WEB, "released", "eu-west-1", HOME),
    ("data", "etl daily", "dana@example.com", CI_DATA, "active", "eu-west-1", HOME),
    ("data", "etl backfill", "dana@example.com", CI_DATA, "active", "us-east-1", HOME),
    ("data", "dbt ci 311", "frank@example.com", CI_DATA, "expiring", "eu-west-1", HOME),
    ("data", "spark sandbox", "frank@example.com", CI_DATA, "expired", "us-east-1", PREVIEW),
    ("data", "etl replay", "dana@example.com", CI_DATA, "released", "eu-west-1", HOME),
    ("data", "schema migration", "frank@example.com", CI_DATA, "released", "us-east-1", PREVIEW),
    ("ml", "train resnet", "erin@example.com", CI_DATA, "active", "us-east-1", HOME),
    ("ml", "train bert", "erin@example.com", CI_DATA, "active", "us-east-1", PREVIEW),
    ("ml", "eval sweep", "gus@example.com", CI_DATA, "active", "us-east-1", HOME),
    ("ml", "hp search 12", "gus@example.com", CI_DATA, "expiring", "us-east-1", HOME),
    ("ml", "train gpt-mini", "erin@example.com", CI_DATA, "expired", "us-east-1", PREVIEW),
    ("ml", "feature store", "gus@example.com", CI_DATA, "released", "us-east-1", HOME),
]
# A TTL inside each project's warning window (web 30m, data 1h, ml 2h): verdict `expiring`.
EXPIRING_TTL = {"web": "20m", "data": "40m", "ml": "90m"}
# Two tasks whose leases were lost (a registry restored from an old backup, say).
LOST = [
    ("ml", "train vit", "0194e0a1-0000-7000-8000-00000000dead", "erin@example.com", "us-east-1"),
    ("web", "preview pr-2", "0194e0a1-0000-7000-8000-00000000beef", "bob@example.com", "eu-west-1"),
]


def api(base: str, method: str, path: str, token: str, body: object | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def take_leases(base: str) -> list[dict]:
    leases = []
    for project, task, owner, token, state, region, account in LEASES:
        ask: dict = {"project": project, "task": task, "owner": owner, "regions": [region]}
        if state == "expiring":
            ask["ttl"] = EXPIRING_TTL[project]
        if state == "expired":
            # A runner that dies stops beating: the lease expires at the missed heartbeat.
            ask["heartbeat_interval"] = "2s"
        lease = api(base, "POST", "/api/v1/leases", token, ask)
        leases.append(dict(lease=lease, state=state, region=region, account=account, token=token))
    for entry in leases:
        if entry["state"] == "released":
            api(base, "POST", f"/api/v1/leases/{entry['lease']['id']}/release", entry["token"], {})
    return leases


def resources_of(key: str, tags: dict, region: str, account: str, serial: int) -> list[dict]:
    """What one task leaves behind: volumes and a snapshot always, and by turns a queue, a
    bucket, a table or an instance."""
    base = {"tags": tags, "region": region, "account": account}
    out = [
        {"key": f"{key} volumes", "type": "ec2:volume", "count": 4, **base},
        {"key": f"{key} snapshot", "type": "ec2:snapshot", **base},
        {"key": f"{key} queue", "type": "sqs:queue", **base},
    ]
    if serial % 2 == 0:
        out.append({"key": f"{key} bucket", "type": "s3:bucket", **base})
    if serial % 3 == 0:
        out.append({"key": f"{key} table", "type": "dynamodb:table", **base})
    if serial % 5 == 0:
        out.append({"key": f"{key} runner", "type": "ec2:instance", **base})
    return out


def estate(leases: list[dict]) -> list[dict]:
    spec = []
    for i, entry in enumerate(leases):
        tags = dict(entry["lease"]["tags"])
        spec += resources_of(entry["lease"]["task"], tags, entry["region"], entry["account"], i)
    for i, (project, task, lease_id, owner, region) in enumerate(LOST):
        tags = dict(zip(TAGS, (lease_id, project, task, owner)))
        spec += resources_of(task, tags, region, HOME, i)
    # Made by hand or by a pipeline that forgot the lease's tags: an identity tag is missing.
    web = leases[0]["lease"]
    spec += [
        {"key": "hand-made volumes", "type": "ec2:volume", "count": 6, "region": "eu-west-1",
         "tags": {"ephemera:project": "data", "team": "data"}},
        {"key": "no owner", "type": "ec2:volume", "count": 5, "region": "us-east-1",
         "tags": {k: v for k, v in web["tags"].items() if k != "ephemera:owner"}},
        {"key": "debug snapshots", "type": "ec2:snapshot", "count": 4, "region": "us-east-1",
         "account": PREVIEW, "tags": {"Name": "debug", "ephemera:project": "web"}},
        {"key": "scratch queue", "type": "sqs:queue", "region": "eu-west-1",
         "tags": {"team": "ml"}},
    ]
    # Shared infrastructure, kept whatever its leases say.
    protect = {"ephemera:protect": "shared", "ephemera:project": "web"}
    spec += [
        {"key": "terraform state", "type": "s3:bucket", "tags": protect},
        {"key": "golden volumes", "type": "ec2:volume", "count": 6, "tags": protect},
        {"key": "golden volumes eu", "type": "ec2:volume", "count": 4, "region": "eu-west-1",
         "account": PREVIEW, "tags": protect},
        {"key": "locks table", "type": "dynamodb:table", "region": "eu-west-1", "tags": protect},
    ]
    return spec


def seed_resources(moto: str, spec: list[dict]) -> int:
    out = subprocess.run(
        [sys.executable, str(REPO / "tests/peers/seed.py"), "--endpoint", moto],
        input=json.dumps({"resources": spec}),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"demo: seeding failed: {out.stderr.strip()}")
    return len(json.loads(out.stdout)["resources"])


def spend(leases: list[dict], days: int = 30) -> list[dict]:
    """Two Cost Explorer answers (project x region, then task x region, the order ephemera asks
    in), one group per key and region a day, consistent with each other."""
    rng = random.Random(7)
    today = dt.datetime.now(dt.timezone.utc).date()
    tasks = [(e["lease"]["project"], e["lease"]["task"], e["region"], e["state"]) for e in leases]
    tasks += [(p, t, r, "lost") for p, t, _, _, r in LOST]
    rate = {t: rng.uniform(2, 40) * (4 if p == "ml" else 1) for p, t, _, _ in tasks}
    by_project, by_task = [], []
    for n in range(days, -1, -1):
        day = today - dt.timedelta(days=n)
        period = {"Start": day.isoformat(), "End": (day + dt.timedelta(days=1)).isoformat()}
        projects: dict = collections.defaultdict(float)
        task_groups = []
        for project, task, region, state in tasks:
            # Ended leases' tasks keep a trickle going: forgotten volumes and snapshots.
            usd = rate[task] * rng.uniform(0.6, 1.4)
            if state in ("released", "expired", "lost") and n < 5:
                usd *= 0.3
            projects[(project, region)] += usd
            task_groups.append((f"ephemera:task${task}", region, usd))
        untagged = rng.uniform(5, 15)
        project_groups = [(f"ephemera:project${p}", r, u) for (p, r), u in projects.items()]
        project_groups.append(("ephemera:project$", "us-east-1", untagged))
        task_groups.append(("ephemera:task$", "us-east-1", untagged))
        estimated = n < 2
        by_project.append(result_day(period, project_groups, estimated))
        by_task.append(result_day(period, task_groups, estimated))
    return [
        {"ResultsByTime": by_project, "DimensionValueAttributes": []},
        {"ResultsByTime": by_task, "DimensionValueAttributes": []},
    ]


def result_day(period: dict, groups: list[tuple[str, str, float]], estimated: bool) -> dict:
    return {
        "TimePeriod": period,
        "Total": {},
        "Groups": [
            {"Keys": [k, r], "Metrics": {"UnblendedCost": {"Amount": f"{u:.4f}", "Unit": "USD"}}}
            for k, r, u in groups
        ],
        "Estimated": estimated,
    }


def queue_spend(moto: str, results: list[dict]) -> None:
    req = urllib.request.Request(
        moto + "/moto-api/static/ce/cost-and-usage-results",
        data=json.dumps({"results": results}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        if resp.status != 201:
            sys.exit(f"demo: moto refused the canned spend: {resp.status}")


def seed(args: argparse.Namespace) -> None:
    leases = take_leases(args.api)
    n = seed_resources(args.moto, estate(leases))
    queue_spend(args.moto, spend(leases))
    states = collections.Counter(e["state"] for e in leases)
    print(
        f"{len(leases)} leases in 3 projects ({', '.join(f'{v} {k}' for k, v in states.items())}), "
        f"{n} resources in 2 regions and 2 accounts, 30 days of spend queued in Cost Explorer"
    )
    # The expired leases' 2 s heartbeat must pass before the pass looks at them.
    time.sleep(2.5)


def pages(base: str, path: str) -> list[dict]:
    items, cursor = [], None
    while True:
        q = f"{path}?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = api(base, "GET", q, OPERATOR)
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def summary(args: argparse.Namespace) -> None:
    resources = collections.Counter(r["verdict"] for r in pages(args.api, "/api/v1/resources"))
    findings = collections.Counter(f["verdict"] for f in pages(args.api, "/api/v1/findings"))
    print(f"{'verdict':<15}{'resources':>10}{'open findings':>15}")
    for verdict in VERDICTS:
        print(f"{verdict:<15}{resources[verdict]:>10}{findings[verdict]:>15}")
    print(f"{'total':<15}{sum(resources.values()):>10}{sum(findings.values()):>15}")
    missing = [v for v in VERDICTS if not resources[v]]
    if missing:
        # CI runs the demo: an estate that no longer shows every verdict is a broken demo.
        sys.exit(f"demo: no resource has the verdict {', '.join(missing)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--api", required=True)
    s.add_argument("--moto", required=True)
    m = sub.add_parser("summary")
    m.add_argument("--api", required=True)
    args = ap.parse_args()
    for url in (getattr(args, "api", None), getattr(args, "moto", None)):
        if url and not url.startswith("http://127.0.0.1:"):
            sys.exit(f"demo: refusing to talk to {url}: loopback only")
    {"seed": seed, "summary": summary}[args.command](args)


if __name__ == "__main__":
    main()
