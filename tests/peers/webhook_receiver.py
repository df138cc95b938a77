#!/usr/bin/env python3
"""A webhook receiver for the tests, written apart from ephemera's sender: Python's own
`hmac` and `json`, nothing shared with the Rust code.

Usage:
    .venv/bin/python tests/peers/webhook_receiver.py --port PORT --dir DIR --secret-file FILE
        [--status CODE]
    .venv/bin/python tests/peers/webhook_receiver.py --port PORT --dir DIR --slack [--status CODE]

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

With --slack it plays a Slack incoming webhook instead (no signature): the body must be
`application/json` with a non-empty string `text` and `blocks` as Slack's Block Kit takes them
(see `check_slack`); it answers 200 `ok` when they hold and 400 `invalid_blocks` otherwise, as
Slack does, recording {"ok", "why", "event": the body, "path"}.

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


PLAIN_OR_MRKDWN = ("plain_text", "mrkdwn")


def check_text(obj, where, kinds=PLAIN_OR_MRKDWN, limit=3000):
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return f"{where}: a text object of type {'/'.join(kinds)}"
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return f"{where}: empty text"
    if len(text) > limit:
        return f"{where}: {len(text)} characters, more than {limit}"
    return None


def check_slack(headers, body: bytes):
    """Returns (status, why, message): Block Kit as Slack documents its limits."""
    if headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
        return 400, "content type " + headers.get("Content-Type", ""), None
    try:
        msg = json.loads(body)
    except ValueError as e:
        return 400, f"not JSON: {e}", None
    if not isinstance(msg, dict):
        return 400, "not an object", None
    if not isinstance(msg.get("text"), str) or not msg["text"].strip():
        return 400, "no fallback text", msg
    blocks = msg.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return 400, "blocks: 1 to 50 needed", msg
    for i, b in enumerate(blocks):
        where = f"blocks[{i}]"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "header":
            why = check_text(b.get("text"), where, ("plain_text",), 150)
        elif kind == "section":
            fields = b.get("fields")
            if "text" not in b and not fields:
                why = f"{where}: a section needs text or fields"
            elif "text" in b:
                why = check_text(b["text"], where)
            else:
                why = None
            if why is None and fields is not None:
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    why = f"{where}: 1 to 10 fields"
                else:
                    for j, f in enumerate(fields):
                        why = why or check_text(f, f"{where}.fields[{j}]", limit=2000)
        elif kind == "context":
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 10:
                why = f"{where}: 1 to 10 context elements"
            else:
                why = None
                for j, e in enumerate(els):
                    why = why or check_text(e, f"{where}.elements[{j}]")
        elif kind == "divider":
            why = None
        else:
            why = f"{where}: unknown block type {kind!r}"
        if why:
            return 400, why, msg
    channel = msg.get("channel")
    if channel is not None and (not isinstance(channel, str) or channel[:1] not in "#@"):
        return 400, f"channel {channel!r}", msg
    return 200, "", msg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--secret-file", type=Path)
    ap.add_argument("--slack", action="store_true")
    ap.add_argument("--status", type=int)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    secret = b"" if args.slack else args.secret_file.read_text().strip().encode()
    counter = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if args.slack:
                status, why, event = check_slack(self.headers, body)
            else:
                status, why, event = check(secret, self.headers, body)
            counter["n"] += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{counter['n']:06d}.json"
            record = {
                "ok": status in (200, 204),
                "why": why,
                "event": event,
                "signature": self.headers.get("X-Ephemera-Signature", ""),
                "path": self.path,
            }
            tmp = args.dir / ("." + name)
            tmp.write_text(json.dumps(record))
            os.replace(tmp, args.dir / name)
            status = args.status or status
            # Slack answers with a word: `ok`, or the error's name.
            answer = b"" if not args.slack else (b"ok" if status == 200 else b"invalid_blocks")
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("READY", flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
