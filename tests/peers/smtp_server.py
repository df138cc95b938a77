#!/usr/bin/env python3
"""A real SMTP server for the mail tests (aiosmtpd), keeping what it receives.

Usage:
    .venv/bin/python tests/peers/smtp_server.py --port PORT --dir DIR
        [--tls none|starttls|implicit --cert-dir CERTS] [--auth USER:PASSWORD]
        [--refuse SUFFIX]

Every accepted message is parsed with Python's own `email` package (not ours) and written
to DIR as one JSON file, atomically (written aside, then renamed), *before* the server answers
250, so a file exists for every message the client was told was accepted:

    {"mail_from": "...", "rcpt_tos": ["..."], "subject": "...", "message_id": "<...>",
     "kind": "owner-digest", "content_type": "multipart/alternative",
     "text": "...", "html": "...", "tls": true, "auth": "user or null"}

With --tls starttls (STARTTLS required before MAIL) or implicit (TLS from the first byte), the
server presents a certificate for 127.0.0.1 and localhost signed by a throwaway CA. Both are
made with the `cryptography` package on first use and kept in CERTS (`ca.pem` is what the
client must trust), so a restarted server presents the same ones. With --auth, AUTH PLAIN or
LOGIN with exactly those credentials is required (and, with TLS, only after it).

Prints `READY` on stdout once it accepts connections; runs until killed. Listens on 127.0.0.1
only.
"""

import argparse
import datetime
import email
import email.policy
import json
import os
import signal
import ssl
import sys
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Keep:
    def __init__(self, directory: Path, refuse: str | None = None) -> None:
        self.directory = directory
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        # A mailbox that does not exist, answered for good (5xx), as a real relay would.
        if self.refuse and address.endswith(self.refuse):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "subject": str(msg["Subject"] or ""),
            "message_id": str(msg["Message-ID"] or ""),
            "kind": str(msg["X-Ephemera-Kind"]) if msg["X-Ephemera-Kind"] else None,
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            # The transport's TLS object: set after STARTTLS and, with implicit TLS, from the
            # start (aiosmtpd's session.ssl covers STARTTLS only).
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "auth": session.auth_data if isinstance(session.auth_data, str) else None,
        }
        name = f"{time.time_ns():020d}-{os.getpid()}"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.rename(self.directory / f"{name}.json")
        return "250 Message accepted for delivery"


def certificates(cert_dir: Path) -> tuple[Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (made once)."""
    cert, key = cert_dir / "server.pem", cert_dir / "server.key"
    if cert.exists() and key.exists() and (cert_dir / "ca.pem").exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ephemera test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert.write_bytes(server.public_bytes(pem))
    (cert_dir / "ca.pem").write_bytes(ca.public_bytes(pem))
    return cert, key


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert-dir", type=Path)
    p.add_argument("--auth", help="USER:PASSWORD required by AUTH")
    p.add_argument("--refuse", help="answer 550 to recipients ending with this")
    args = p.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)

    kwargs = {}
    if args.tls != "none":
        if args.cert_dir is None:
            p.error("--tls needs --cert-dir")
        args.cert_dir.mkdir(parents=True, exist_ok=True)
        cert, key = certificates(args.cert_dir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if args.tls == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        else:
            kwargs.update(ssl_context=context)
    if args.auth:
        user, _, password = args.auth.partition(":")

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd answers 235 or 535 itself.
            return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            # aiosmtpd counts only STARTTLS as TLS here: with implicit TLS (the whole session
            # encrypted) requiring it would hide AUTH from EHLO.
            auth_require_tls=args.tls == "starttls",
        )

    controller = Controller(
        Keep(args.dir, args.refuse), hostname="127.0.0.1", port=args.port, ready_timeout=10, **kwargs
    )
    controller.start()
    print("READY", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (controller.stop(), sys.exit(0)))
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
