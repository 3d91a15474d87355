"""A real HTTP server on loopback that plays the rdsvend API for the client's unit tests.

It checks each request's SigV4 signature (service ``execute-api``) with botocore against
the keys the test gives it, records every request, and answers what the test scripts:
by default a fresh token per request.
"""
from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY = "AKIDCLIENTTEST000001"
SECRET_KEY = "client-test-secret-key"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


Reply = tuple[int, dict[str, str], object]


@dataclass
class FakeVendServer:
    ttl_seconds: int = 840
    responder: Callable[[int, Seen], Reply] | None = None
    seen: list[Seen] = field(default_factory=list)
    gate: threading.Event | None = None  # when set, requests wait for it before answering
    entered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, dict(self.headers.items()), body,
                            _signature_ok(self.command, fake.url + self.path, self.headers, body))
                with fake.lock:
                    fake.seen.append(seen)
                    number = len(fake.seen)
                fake.entered.set()
                if fake.gate is not None:
                    fake.gate.wait(timeout=10)
                status, headers, payload = (fake.responder or fake.default_reply)(number, seen)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def default_reply(self, number: int, seen: Seen) -> Reply:
        request = json.loads(seen.body or b"{}")
        return 200, {"Cache-Control": "no-store"}, token_body(
            f"tok-{number}", request.get("database", "orders-prod"),
            request.get("db_user", "orders_app"), self.ttl_seconds)

    @property
    def posts(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == "POST"]

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def token_body(token: str, database: str = "orders-prod", db_user: str = "orders_app",
               ttl_seconds: int = 840) -> dict[str, Any]:
    expires = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
    return {
        "token": token,
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ttl_seconds": ttl_seconds,
        "database": database,
        "db_user": db_user,
        "engine": "postgres",
        "host": "db.example.internal",
        "port": 5432,
        "dbname": "orders",
        "region": "us-east-1",
        "sslmode": "verify-full",
        "ssl_root_cert": "rds-global-bundle.pem",
        "dsn": f"host=db.example.internal port=5432 dbname=orders user={db_user} sslmode=verify-full",
        "rule": "orders-api",
    }


def error_reply(status: int, code: str, retry_after: int | None = None) -> Reply:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return status, headers, {"error": {"code": code, "message": f"{code} happened", "request_id": "req-1"}}


def _signature_ok(method: str, url: str, headers: Message[str, str], body: bytes) -> bool:
    """Recompute the SigV4 signature (execute-api, us-east-1) with botocore and compare."""
    authorization = headers.get("Authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return False
    fields = dict(part.strip().split("=", 1) for part in authorization[17:].split(","))
    signed = fields["SignedHeaders"].split(";")
    scope = fields["Credential"].split("/")
    if scope[0] != ACCESS_KEY or scope[3] != "execute-api":
        return False
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers[name] for name in signed})
    request.context["timestamp"] = headers["X-Amz-Date"]
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", scope[2])
    expected: str = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return expected == fields["Signature"]


@dataclass
class CliResult:
    """What a person sees from one ``rdsvend`` run: exit status, stdout, stderr."""

    exit_code: int
    stdout: str
    stderr: str


def run_cli(main: Any, *args: str) -> CliResult:
    """Run the client's ``main`` in-process (sys.exit caught), capturing both streams."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())
