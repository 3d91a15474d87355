"""One deadline per request for every upstream call of a vend.

Each upstream (the identity proof's STS call, AssumeRole, RDS, DynamoDB, SSM) is in turn a
loopback HTTP server that accepts the request, sends a status line and headers, and then drips
its body one byte every 50 ms: well inside every read timeout, so only an overall deadline can
stop the vend. The vend answers 503 ``upstream_unavailable`` with a retry hint shortly after
the request's deadline instead of waiting for the drip to end (minutes).

The clients are created before the vend (:func:`ready`): creating a boto3 client reads its
service's model, which takes seconds on a loaded machine and would otherwise spend the
deadline before the request is even sent. Whether a request reached the drip is read from the
server's side once it has seen it (:attr:`DripServer.served`), not at the moment the vend ends.
"""
from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import app as app_module
from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.deadline import DeadlinePassedError, upstream_deadline
from chalicelib.aws.rds import EndpointResolver
from chalicelib.errors import UpstreamUnavailableError
from chalicelib.identity import identity_from_arn
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import SsmPolicySource, StaticPolicySource
from chalicelib.routes.http import set_vending_service
from chalicelib.routes.invoke import handle_vend
from chalicelib.signer import TokenMinter
from chalicelib.signer.roles import StsRoleAssumer
from chalicelib.vending.pipeline import VEND_DEADLINE_SECONDS, VendingService
from chalicelib.vending.proof import ProofConfig
from chalicelib.vending.ratelimit import RateLimiter
from chalicelib.vending.ratelimit_table import TableRateLimiter
from chalicelib.vending.verifier import StsVerifier
from rdsvend import invoke_payload
from tests.support.events import token_event

ACCT = "111122223333"
DEADLINE = 1.5
#: Well above the deadline, far below the drip's length (100 KB at 20 bytes/s).
BOUND = DEADLINE + 1.5
POLICY = textwrap.dedent(f"""
    version: 1
    databases:
      described:
        engine: postgres
        region: us-east-1
        instance: described-db
        users:
          app: {{auth: iam}}
      given:
        engine: postgres
        region: us-east-1
        instance: given-db
        host: given.internal.example
        port: 5432
        users:
          app: {{auth: iam}}
      signed:
        engine: postgres
        region: us-east-1
        instance: signed-db
        host: signed.internal.example
        port: 5432
        resource_id: db-ABCDEFGHIJKLMNOPQRSTUVWXYZ
        signer_role: arn:aws:iam::{ACCT}:role/rdsvend-signer
        users:
          app: {{auth: iam}}
    rules:
      - id: apps
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/app"]
        databases: ["*"]
        db_users: [app]
""")
CALLER = identity_from_arn(f"arn:aws:sts::{ACCT}:assumed-role/app/s1", account=ACCT)


class DripServer:
    """Accepts any number of connections; on each, reads one request, sends a 200 head that
    promises a 100 KB body and then sends that body one byte at a time."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        self.served = threading.Event()  # a request was read and its answer began to drip
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                             b"Content-Length: 100000\r\n\r\n")
                self.served.set()
                while not self.stop.wait(self.every):
                    conn.sendall(b" ")
            except OSError:
                return

    def reached(self) -> bool:
        """A request reached the drip (waited for: the server thread may run after the vend)."""
        return self.served.wait(10)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def drip() -> Iterator[DripServer]:
    server = DripServer()
    yield server
    server.close()


def clients(url: str) -> ClientFactory:
    return ClientFactory(endpoint_url=url, default_region="us-east-1")


def ready(factory: ClientFactory, *services: str) -> ClientFactory:
    """``factory`` with the clients for ``services`` already created (see the module's doc)."""
    for name in services:
        factory(name)
    return factory


def service(drip_url: str | None = None, **overrides: Any) -> VendingService:
    args: dict[str, Any] = dict(policy_source=StaticPolicySource(load_policy_text(POLICY, "t.yaml")),
                minter=TokenMinter(cache_tokens=False),
                resolver=EndpointResolver(ready(clients(drip_url), "rds") if drip_url else clients("http://127.0.0.1:9"),
                                          service_account=ACCT),
                deadline_seconds=DEADLINE)
    args.update(overrides)
    return VendingService(**args)


def vend_within_deadline(svc: VendingService, database: str) -> UpstreamUnavailableError:
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError) as caught:
        svc.vend(CALLER, {"database": database, "db_user": "app"}, "req-1")
    took = time.monotonic() - started
    assert took < BOUND, f"the vend took {took:.1f} s"
    return caught.value


def test_the_deadline_is_below_the_functions_timeout() -> None:
    config = json.loads(open(".chalice/config.json").read())
    assert VEND_DEADLINE_SECONDS < config["lambda_timeout"]


@pytest.mark.timeout(60)
def test_a_dripping_rds_describe_is_cut_off_at_the_deadline(drip: DripServer) -> None:
    error = vend_within_deadline(service(drip.url), "described")
    assert drip.reached() and error.retry_after > 0


@pytest.mark.timeout(60)
def test_a_dripping_assume_role_is_cut_off_at_the_deadline(drip: DripServer) -> None:
    minter = TokenMinter(cache_tokens=False, assume_role=StsRoleAssumer(ready(clients(drip.url), "sts")))
    error = vend_within_deadline(service(minter=minter), "signed")
    assert drip.reached() and error.retry_after > 0


@pytest.mark.timeout(60)
def test_a_dripping_rate_table_is_cut_off_at_the_deadline(drip: DripServer) -> None:
    table = TableRateLimiter(clients(drip.url)("dynamodb"), "rdsvend-rate", 10, 20,
                             fallback=RateLimiter(10, 20))
    vend_within_deadline(service(rate_limiter=table), "given")
    assert drip.reached()


@pytest.mark.timeout(60)
def test_a_dripping_ssm_parameter_is_cut_off_at_the_deadline(drip: DripServer) -> None:
    ssm = ready(clients(drip.url), "ssm")
    source = SsmPolicySource("/rdsvend/policy", lambda: ssm("ssm"))
    error = vend_within_deadline(service(policy_source=source), "given")
    assert drip.reached() and error.code == "upstream_unavailable"


@pytest.mark.timeout(60)
def test_a_dripping_identity_proof_is_cut_off_at_the_request_deadline(drip: DripServer) -> None:
    # The proof's own bound (5 s) is longer than the request's: the request's deadline wins.
    verifier = StsVerifier(ProofConfig(sts_endpoint=drip.url, server_id="srv-1", total_timeout=5.0))
    session = boto3.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x" * 40,
                            region_name="us-east-1")
    payload = invoke_payload("given", "app", "srv-1", session=session, endpoint_url=drip.url)
    svc = service()
    started = time.monotonic()
    answer = handle_vend(payload, "req-2", service=svc, verifier=verifier)
    took = time.monotonic() - started
    assert answer["error"]["code"] == "upstream_unavailable" and answer["error"]["retry_after"] > 0
    assert drip.reached() and took < BOUND, f"the vend took {took:.1f} s"
    assert drip.requests == 1


@pytest.mark.timeout(60)
def test_the_http_api_answers_503_with_retry_after(drip: DripServer) -> None:
    set_vending_service(service(drip.url))
    try:
        event = token_event({"database": "described", "db_user": "app"},
                            arn=f"arn:aws:sts::{ACCT}:assumed-role/app/s1")
        started = time.monotonic()
        answer = app_module.app(event, None)
        took = time.monotonic() - started
    finally:
        set_vending_service(None)
    assert answer["statusCode"] == 503, answer["body"]
    assert json.loads(answer["body"])["error"]["code"] == "upstream_unavailable"
    assert int(answer["headers"]["Retry-After"]) > 0 and took < BOUND
    assert drip.reached()


@pytest.mark.timeout(60)
def test_retries_stop_when_the_back_off_would_pass_the_deadline() -> None:
    # A closed port fails fast; botocore would retry with back-off. Inside a 0.3 s deadline
    # no retry fits: one attempt, then the failure.
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    attempts: list[str] = []
    client = clients(url)("rds")
    client.meta.events.register("before-send", lambda **kw: attempts.append("x"))
    started = time.monotonic()
    with upstream_deadline(0.3), pytest.raises(Exception) as caught:
        client.describe_db_instances()
    assert len(attempts) == 1 and time.monotonic() - started < 1.0
    assert type(caught.value).__name__ in ("EndpointConnectionError", "DeadlinePassedError")


def test_an_enclosing_deadline_stays_in_force_and_a_spent_one_sends_nothing() -> None:
    with upstream_deadline(5.0) as at:
        with upstream_deadline(60.0) as inner:
            assert inner == at  # an enclosing earlier deadline stays in force
    with upstream_deadline(0.0), pytest.raises(DeadlinePassedError):
        clients("http://127.0.0.1:9")("rds").describe_db_instances()


class ClosingServer:
    """Answers each request with ``Connection: close``: the head first, the JSON body a moment
    later (so it is not yet buffered when http.client, seeing the close, closes its end)."""

    BODY = json.dumps({"TableNames": [f"table-{n:05d}" for n in range(2000)]}).encode()

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(self.BODY))
            time.sleep(0.1)
            conn.sendall(self.BODY)


def test_an_answer_that_closes_the_connection_is_read_whole_with_or_without_a_deadline() -> None:
    # A server may close the connection after its answer (Connection: close); http.client then
    # closes its end before reading the body, which it may do only because the response file
    # keeps the socket open (as socket.makefile's does). A deadline-bound client must too.
    server = ClosingServer()
    try:
        client = clients(server.url)("dynamodb")
        assert len(client.list_tables()["TableNames"]) == 2000
        with upstream_deadline(5.0):
            assert len(client.list_tables()["TableNames"]) == 2000
    finally:
        server.listener.close()
