#!/usr/bin/env python3
"""A webhook receiver for the tests, written apart from ephemera's sender: Python's own
`hmac` and `json`, nothing shared with the Rust code.

Usage:
    .venv/bin/python tests/peers/webhook_receiver.py --port PORT --dir DIR --secret-file FILE
        [--status CODE]

For every POST it checks, in order:
  * the signature: header `X-Ephemera-Signature: t=<unix seconds>,v1=<hex>` where hex is
    HMAC-SHA256(secret, "<t>." + body), compared in constant time, and t within 5 minutes;
  * the content type `application/cloudevents+json`;
  * the body as CloudEvents 1.0 structured JSON: `specversion` "1.0", non-empty string `id`,
    `source` and `type`, `time` in RFC 3339, `subject` a string, `data` an object.
It writes one JSON file per request to DIR, atomically (written aside, then renamed) before it
answers: {"ok": bool, "why": "...", "event": {...} or null, "signature": "...", "path": "..."}.
It answers 204 when everything holds, 401 for a bad signature, 400 for a bad body; with
--status CODE it answers CODE to every request (after recording it) to play a failing endpoint.

Prints `READY` on stdout once it accepts connections; runs until killed. Listens on 127.0.0.1.
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def check(secret: bytes, headers, body: bytes):
    """Returns (status, why, event)."""
    sig = headers.get("X-Ephemera-Signature", "")
    parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
    try:
        t = int(parts.get("t", ""))
    except ValueError:
        return 401, "no signature time", None
    want = hmac.new(secret, str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, parts.get("v1", "")):
        return 401, "bad signature", None
    if abs(time.time() - t) > 300:
        return 401, "signature too old", None
    if headers.get("Content-Type", "").split(";")[0].strip() != "application/cloudevents+json":
        return 400, "content type " + headers.get("Content-Type", ""), None
    try:
        event = json.loads(body)
    except ValueError as e:
        return 400, f"not JSON: {e}", None
    if not isinstance(event, dict) or event.get("specversion") != "1.0":
        return 400, "specversion is not 1.0", event
    for key in ("id", "source", "type", "subject"):
        if not isinstance(event.get(key), str) or not event[key]:
            return 400, f"{key} missing", event
    try:
        datetime.datetime.fromisoformat(event.get("time", "").replace("Z", "+00:00"))
    except ValueError:
        return 400, "time is not RFC 3339", event
    if not isinstance(event.get("data"), dict):
        return 400, "data is not an object", event
    return 204, "", event


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--secret-file", type=Path, required=True)
    ap.add_argument("--status", type=int)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    secret = args.secret_file.read_text().strip().encode()
    counter = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, why, event = check(secret, self.headers, body)
            counter["n"] += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{counter['n']:06d}.json"
            record = {
                "ok": status == 204,
                "why": why,
                "event": event,
                "signature": self.headers.get("X-Ephemera-Signature", ""),
                "path": self.path,
            }
            tmp = args.dir / ("." + name)
            tmp.write_text(json.dumps(record))
            os.replace(tmp, args.dir / name)
            self.send_response(args.status or status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("READY", flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
