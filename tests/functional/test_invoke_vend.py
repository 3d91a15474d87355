"""The direct-invoke function ``vend``: identity proofs checked against moto's STS in server
mode on loopback (the real HTTP path), then the vending pipeline.

moto's GetCallerIdentity names the caller from the access key in the Authorization header
and does not verify signatures, so what these tests exercise is rdsvend's own checks (URL,
signed headers, server id, age, body) and its reading of STS's answer. Where STS itself
must refuse (a bad signature), a loopback stub answers as STS does.
"""
from __future__ import annotations

import io
import json
import logging
import socket
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer

import app as app_module
from chalicelib.clock import FrozenClock
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.routes import invoke as invoke_module
from chalicelib.routes.http import set_vending_service
from chalicelib.routes.invoke import handle_vend, set_verifier
from chalicelib.signer import TokenMinter
from chalicelib.vending.pipeline import VendingService
from chalicelib.vending.proof import SERVER_ID_HEADER, ProofConfig
from chalicelib.vending.verifier import StsVerifier
from rdsvend import invoke_payload
from rdsvend.proof import build_identity_proof
from tests.support.events import load_event
from tests.support.examples import examples
from tests.support.policies import PolicyEndpoints

pytestmark = pytest.mark.e2e  # starts a server: not in the fast tier

ACCT = "123456789012"  # moto server's default account
SERVER_ID = "rdsvend-test-server"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "sts:AssumeRole"}]})
POLICY = textwrap.dedent(
    f"""
    version: 1
    databases:
      orders-prod:
        engine: postgres
        region: us-east-1
        instance: orders-prod
        host: orders-prod.abc.us-east-1.rds.amazonaws.com
        port: 5432
        dbname: orders
        users:
          orders_app: {{auth: iam, tier: service-user}}
    rules:
      - id: invokers
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/invoker-*"]
        databases: [orders-prod]
        db_users: [orders_app]
      - id: from-the-office-only
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/ipbound-*"]
        databases: [orders-prod]
        db_users: [orders_app]
        conditions:
          source_ips: [10.0.0.0/8]
    """
)


# --------------------------------------------------------------------------- loopback helpers


class RecordingListener:
    """A TCP listener on loopback that only counts the connections it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class StubServer:
    """A loopback HTTP server answering every POST with a fixed (status, headers, body)."""

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                 hang: bool = False) -> None:
        stub = self
        self.requests = 0
        self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                stub.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hang:
                    stub.release.wait(10)
                    return
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class MotoSts:
    url: str
    admin: boto3.Session
    mallory: dict[str, Any]  # an IAM user's access key (CreateAccessKey's answer)


@pytest.fixture(scope="module")
def sts() -> Iterator[MotoSts]:
    """moto in server mode on loopback, seeded with roles and users; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    admin = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    iam = admin.client("iam", endpoint_url=url)
    for role in ("invoker-blue", "ipbound-app", "unlisted-role"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST)
    iam.create_user(UserName="mallory")
    key = iam.create_access_key(UserName="mallory")["AccessKey"]
    yield MotoSts(url=url, admin=admin, mallory=key)
    server.stop()


def assumed(sts: MotoSts, role: str, session_name: str = "fn-1") -> boto3.Session:
    creds = sts.admin.client("sts", endpoint_url=sts.url).assume_role(
        RoleArn=f"arn:aws:iam::{ACCT}:role/{role}", RoleSessionName=session_name)["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name="us-east-1")


@pytest.fixture
def service() -> VendingService:
    # Host and port come from the policy; the resolver only echoes them (no RDS call needed).
    resolver = PolicyEndpoints()
    return VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "invoke-test.yaml")),
                          minter=TokenMinter(cache_tokens=False), resolver=resolver)


@pytest.fixture
def verifier(sts: MotoSts) -> StsVerifier:
    return StsVerifier(ProofConfig(sts_endpoint=sts.url, server_id=SERVER_ID))


@pytest.fixture
def wired(service: VendingService, verifier: StsVerifier) -> Iterator[None]:
    """The Lambda entry point as deployed: app.py's blueprint with the app's middleware."""
    set_vending_service(service)
    set_verifier(verifier)
    yield
    set_vending_service(None)
    set_verifier(None)


def payload_for(sts: MotoSts, session: boto3.Session, *, server_id: str = SERVER_ID, **overrides: Any,
                ) -> dict[str, Any]:
    payload = invoke_payload("orders-prod", "orders_app", server_id, session=session, endpoint_url=sts.url)
    payload.update(overrides)
    return payload


def invoke(payload: Any, request_id: str = "req-invoke-1") -> dict[str, Any]:
    answer: dict[str, Any] = invoke_module.vend(payload, SimpleNamespace(aws_request_id=request_id))
    return answer


def error_code(answer: dict[str, Any]) -> str:
    assert set(answer) == {"error"}, answer
    assert answer["error"]["request_id"]
    code: str = answer["error"]["code"]
    return code


# --------------------------------------------------------------------------- tests


def test_vend_is_registered_in_the_app() -> None:
    names = {fn.name for fn in app_module.app.pure_lambda_functions}
    assert "vend" in names


def test_valid_proof_from_an_assumed_role_vends(sts: MotoSts, wired: None) -> None:
    answer = invoke(payload_for(sts, assumed(sts, "invoker-blue")))
    assert set(answer) == {"token", "expires_at", "ttl_seconds", "database", "db_user", "engine", "host",
                           "port", "dbname", "region", "sslmode", "ssl_root_cert", "dsn", "rule"}, answer
    host = "orders-prod.abc.us-east-1.rds.amazonaws.com"
    assert answer["token"].startswith(f"{host}:5432/?Action=connect&DBUser=orders_app")
    assert answer["rule"] == "invokers" and answer["db_user"] == "orders_app"
    assert 0 < answer["ttl_seconds"] <= 870
    assert answer["token"] not in answer["dsn"]


def test_proof_from_the_default_https_sts_endpoint_shape() -> None:
    session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", region_name="eu-west-1")
    proof = build_identity_proof("srv", session=session)
    assert proof["url"] == "https://sts.eu-west-1.amazonaws.com/"
    assert proof["headers"]["Host"] == "sts.eu-west-1.amazonaws.com"
    assert "x-rdsvend-server-id" in proof["headers"]["Authorization"].split("SignedHeaders=")[1]


def test_forbidden_user_gets_forbidden(sts: MotoSts, wired: None) -> None:
    mallory = boto3.Session(aws_access_key_id=sts.mallory["AccessKeyId"],
                            aws_secret_access_key=sts.mallory["SecretAccessKey"], region_name="us-east-1")
    assert error_code(invoke(payload_for(sts, mallory))) == "forbidden"


def test_role_no_rule_names_gets_forbidden(sts: MotoSts, wired: None) -> None:
    assert error_code(invoke(payload_for(sts, assumed(sts, "unlisted-role")))) == "forbidden"


def test_credentials_sts_does_not_know_are_unauthenticated(sts: MotoSts, wired: None) -> None:
    # moto answers an unknown key with a placeholder identity (user/moto under sts:), which
    # rdsvend does not accept as a principal.
    stranger = boto3.Session(aws_access_key_id="AKIAUNKNOWNKEY000000", aws_secret_access_key="x",
                             region_name="us-east-1")
    assert error_code(invoke(payload_for(sts, stranger))) == "unauthenticated"


def test_sts_refusing_the_signature_is_unauthenticated(sts: MotoSts, service: VendingService) -> None:
    body = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            b"<Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match"
            b"</Message></Error><RequestId>r</RequestId></ErrorResponse>")
    stub = StubServer(403, body)
    try:
        payload = invoke_payload("orders-prod", "orders_app", SERVER_ID, session=assumed(sts, "invoker-blue"),
                                 endpoint_url=stub.url)
        verifier = StsVerifier(ProofConfig(sts_endpoint=stub.url, server_id=SERVER_ID))
        answer = handle_vend(payload, "r1", service=service, verifier=verifier)
        assert error_code(answer) == "unauthenticated"
        assert stub.requests == 1
    finally:
        stub.close()


def test_sts_throttling_is_upstream_unavailable_with_retry_after(sts: MotoSts, service: VendingService) -> None:
    body = b"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
    stub = StubServer(400, body)
    try:
        payload = invoke_payload("orders-prod", "orders_app", SERVER_ID, session=assumed(sts, "invoker-blue"),
                                 endpoint_url=stub.url)
        verifier = StsVerifier(ProofConfig(sts_endpoint=stub.url, server_id=SERVER_ID))
        answer = handle_vend(payload, "r1", service=service, verifier=verifier)
        assert error_code(answer) == "upstream_unavailable"
        assert answer["error"]["retry_after"] >= 1
    finally:
        stub.close()


def test_source_ip_condition_fails_closed_on_direct_invoke(sts: MotoSts, wired: None) -> None:
    # Over HTTP, the same role from an address inside 10.0.0.0/8 is allowed ...
    event = load_event("post_tokens")
    event["requestContext"]["identity"].update(
        userArn=f"arn:aws:sts::{ACCT}:assumed-role/ipbound-app/s", accountId=ACCT, sourceIp="10.1.2.3")
    event["body"] = json.dumps({"database": "orders-prod", "db_user": "orders_app"})
    assert app_module.app(event, None)["statusCode"] == 200
    # ... by direct invoke there is no source IP, so the rule cannot match.
    assert error_code(invoke(payload_for(sts, assumed(sts, "ipbound-app")))) == "forbidden"


def test_missing_server_id_header(sts: MotoSts, wired: None) -> None:
    payload = payload_for(sts, assumed(sts, "invoker-blue"))
    del payload["identity"]["headers"][SERVER_ID_HEADER]
    answer = invoke(payload)
    assert error_code(answer) == "unauthenticated"


def test_unsigned_server_id_header(sts: MotoSts, wired: None) -> None:
    payload = payload_for(sts, assumed(sts, "invoker-blue"))
    headers = payload["identity"]["headers"]
    auth = headers["Authorization"]
    headers["Authorization"] = auth.replace(";x-rdsvend-server-id", "")
    assert error_code(invoke(payload)) == "unauthenticated"


def test_server_id_added_after_signing_is_not_signed(sts: MotoSts, service: VendingService, verifier: StsVerifier,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    session = assumed(sts, "invoker-blue")
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=sts.url + "/", data="Action=GetCallerIdentity&Version=2011-06-15",
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(session.get_credentials().get_frozen_credentials(), "sts", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    headers[SERVER_ID_HEADER] = SERVER_ID
    payload = {"database": "orders-prod", "db_user": "orders_app",
               "identity": {"url": sts.url + "/", "method": "POST", "headers": headers,
                            "body": "Action=GetCallerIdentity&Version=2011-06-15"}}
    answer = handle_vend(payload, "r1", service=service, verifier=verifier)
    assert error_code(answer) == "unauthenticated"


def test_wrong_server_id(sts: MotoSts, wired: None) -> None:
    answer = invoke(payload_for(sts, assumed(sts, "invoker-blue"), server_id="another-rdsvend"))
    assert error_code(answer) == "unauthenticated"


def test_ten_minute_old_proof_is_refused_and_four_minute_old_is_not(sts: MotoSts, service: VendingService) -> None:
    payload = payload_for(sts, assumed(sts, "invoker-blue"))
    signed_at = datetime.strptime(payload["identity"]["headers"]["X-Amz-Date"], "%Y%m%dT%H%M%SZ") \
        .replace(tzinfo=UTC)
    # The verifier's clock is ten minutes after the signature: the proof is ten minutes old.
    old = StsVerifier(ProofConfig(sts_endpoint=sts.url, server_id=SERVER_ID),
                      clock=FrozenClock(signed_at + timedelta(minutes=10)))
    assert error_code(handle_vend(payload, "r1", service=service, verifier=old)) == "unauthenticated"
    recent = StsVerifier(ProofConfig(sts_endpoint=sts.url, server_id=SERVER_ID),
                         clock=FrozenClock(signed_at + timedelta(minutes=4)))
    assert "token" in handle_vend(payload, "r2", service=service, verifier=recent)


def test_proof_dated_in_the_future_is_refused(sts: MotoSts, service: VendingService) -> None:
    payload = payload_for(sts, assumed(sts, "invoker-blue"))
    signed_at = datetime.strptime(payload["identity"]["headers"]["X-Amz-Date"], "%Y%m%dT%H%M%SZ") \
        .replace(tzinfo=UTC)
    early = StsVerifier(ProofConfig(sts_endpoint=sts.url, server_id=SERVER_ID),
                        clock=FrozenClock(signed_at - timedelta(minutes=10)))
    assert error_code(handle_vend(payload, "r1", service=service, verifier=early)) == "unauthenticated"


def test_proof_whose_url_points_elsewhere_contacts_nobody(sts: MotoSts, service: VendingService,
                                                          verifier: StsVerifier) -> None:
    elsewhere = RecordingListener()
    try:
        session = assumed(sts, "invoker-blue")
        # Signed for another host: URL and Host header name the listener.
        payload = invoke_payload("orders-prod", "orders_app", SERVER_ID, session=session, endpoint_url=elsewhere.url)
        assert error_code(handle_vend(payload, "r1", service=service, verifier=verifier)) == "unauthenticated"
        # Signed for the right host, URL rewritten to point elsewhere.
        payload = payload_for(sts, session)
        payload["identity"]["url"] = elsewhere.url + "/"
        assert error_code(handle_vend(payload, "r2", service=service, verifier=verifier)) == "unauthenticated"
        # Right URL, Host header pointing elsewhere.
        payload = payload_for(sts, session)
        payload["identity"]["headers"]["Host"] = f"127.0.0.1:{elsewhere.port}"
        assert error_code(handle_vend(payload, "r3", service=service, verifier=verifier)) == "unauthenticated"
        # Same host, other scheme or port, or user info in the URL.
        for url in (sts.url.replace("http://", "https://") + "/", f"http://evil@{sts.url[7:]}/",
                    f"{sts.url}/?Action=AssumeRole", f"{sts.url}/other-path"):
            payload = payload_for(sts, session)
            payload["identity"]["url"] = url
            assert error_code(handle_vend(payload, "r4", service=service, verifier=verifier)) == "unauthenticated"
    finally:
        elsewhere.close()
    assert elsewhere.connections == 0


def test_redirect_from_sts_is_not_followed(sts: MotoSts, service: VendingService) -> None:
    elsewhere = RecordingListener()
    stub = StubServer(307, headers={"Location": elsewhere.url + "/"})
    try:
        payload = invoke_payload("orders-prod", "orders_app", SERVER_ID, session=assumed(sts, "invoker-blue"),
                                 endpoint_url=stub.url)
        verifier = StsVerifier(ProofConfig(sts_endpoint=stub.url, server_id=SERVER_ID))
        assert error_code(handle_vend(payload, "r1", service=service, verifier=verifier)) == "upstream_unavailable"
        assert stub.requests == 1
    finally:
        stub.close()
        elsewhere.close()
    assert elsewhere.connections == 0


def test_sts_that_never_answers_is_cut_off(sts: MotoSts, service: VendingService) -> None:
    stub = StubServer(200, hang=True)
    try:
        payload = invoke_payload("orders-prod", "orders_app", SERVER_ID, session=assumed(sts, "invoker-blue"),
                                 endpoint_url=stub.url)
        verifier = StsVerifier(ProofConfig(sts_endpoint=stub.url, server_id=SERVER_ID, connect_timeout=0.5,
                                           read_timeout=0.5, total_timeout=1.0))
        assert error_code(handle_vend(payload, "r1", service=service, verifier=verifier)) == "upstream_unavailable"
    finally:
        stub.close()


def test_other_sts_actions_are_refused_before_sending(sts: MotoSts, service: VendingService,
                                                      verifier: StsVerifier) -> None:
    payload = payload_for(sts, assumed(sts, "invoker-blue"))
    payload["identity"]["body"] = "Action=AssumeRole&Version=2011-06-15&RoleArn=x&RoleSessionName=y"
    assert error_code(handle_vend(payload, "r1", service=service, verifier=verifier)) == "unauthenticated"


def test_unconfigured_server_id_refuses_every_proof(sts: MotoSts, service: VendingService,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RDSVEND_SERVER_ID", raising=False)
    set_verifier(None)
    try:
        answer = handle_vend(payload_for(sts, assumed(sts, "invoker-blue")), "r1", service=service)
    finally:
        set_verifier(None)
    assert error_code(answer) == "internal"


@pytest.mark.parametrize(
    "payload, field",
    [
        (None, "payload"),
        ([], "payload"),
        ("orders-prod", "payload"),
        (42, "payload"),
        ({}, "database"),
        ({"database": "orders-prod", "db_user": "orders_app"}, "identity"),
        ({"database": "orders-prod", "db_user": "orders_app", "identity": "signed"}, "identity"),
        ({"database": "orders-prod", "db_user": "orders_app", "identity": None}, "identity"),
        ({"database": 7, "db_user": "orders_app", "identity": {}}, "database"),
        ({"database": "orders-prod", "db_user": ["orders_app"], "identity": {}}, "db_user"),
        ({"database": "x" * 5000, "db_user": "orders_app", "identity": {}}, "database"),
        ({"database": "orders-prod", "db_user": "orders_app", "identity": {}, "admin": True}, "admin"),
        ({"database": "orders-prod", "db_user": "orders_app", "identity": {"url": "x" * 100_000}}, "payload"),
    ],
)
def test_malformed_payloads_are_invalid_requests(wired: None, payload: dict[str, Any] | int | list[Any] | str | None,
                                                 field: str) -> None:
    answer = invoke(payload)
    assert error_code(answer) == "invalid_request"
    assert field in answer["error"]["message"]


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda p: p["identity"].update(headers="Authorization: x"), "identity.headers"),
        (lambda p: p["identity"].update(headers=None), "identity.headers"),
        (lambda p: p["identity"]["headers"].update({"X-Amz-Date": 20260101}), "X-Amz-Date"),
        (lambda p: p["identity"]["headers"].update({"X-Evil": "a\r\nHost: evil"}), "X-Evil"),
        (lambda p: p["identity"]["headers"].update({"authorization": "dup"}), "authorization"),
        (lambda p: p["identity"]["headers"].update({"Transfer-Encoding": "chunked"}), "Transfer-Encoding"),
        (lambda p: p["identity"].update(body=["Action=GetCallerIdentity"]), "identity.body"),
        (lambda p: p["identity"].update(url=None), "identity.url"),
        (lambda p: p["identity"].update(extra=1), "extra"),
        (lambda p: p["identity"]["headers"].update({f"X-H{i}": "v" for i in range(40)}), "identity.headers"),
    ],
)
def test_malformed_proofs_are_invalid_requests(sts: MotoSts, service: VendingService, verifier: StsVerifier,
                                               mutate: Callable[[dict[str, Any]], object], fragment: str) -> None:
    payload = payload_for(sts, assumed(sts, "invoker-blue"))
    mutate(payload)
    answer = handle_vend(payload, "r1", service=service, verifier=verifier)
    assert error_code(answer) == "invalid_request"
    assert fragment in answer["error"]["message"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=30,
)
_payloads = _json | st.fixed_dictionaries(
    {"database": _json, "db_user": _json, "identity": _json | st.fixed_dictionaries(
        {"url": _json, "method": _json, "headers": _json | st.dictionaries(st.text(max_size=20), _json),
         "body": _json})})


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_payloads)
def test_hostile_payloads_always_get_an_error_payload(service: VendingService, payload: object) -> None:
    # No STS is reachable here (a closed loopback port): nothing random gets that far anyway.
    verifier = StsVerifier(ProofConfig(sts_endpoint="http://127.0.0.1:9", server_id=SERVER_ID))
    answer = handle_vend(payload, "r-fuzz", service=service, verifier=verifier)
    assert error_code(answer) in {"invalid_request", "unauthenticated"}


def test_proof_and_token_never_reach_logs_or_output(sts: MotoSts, wired: None,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    session = assumed(sts, "invoker-blue")
    # The caller builds its proofs first: botocore's own DEBUG log of the caller's signing is
    # the caller's business. What the function writes while handling them is what counts.
    good = payload_for(sts, session)
    refused = [payload_for(sts, session, server_id="another"), payload_for(sts, session),
               payload_for(sts, session)]
    refused[1]["identity"]["url"] = "http://127.0.0.1:9/"
    refused[2]["identity"]["headers"]["X-Amz-Date"] = "20200101T000000Z"
    caplog.clear()
    with redirect_stdout(out), redirect_stderr(err):
        answer = invoke(good)
        for payload in refused:
            invoke(payload)
    assert "token" in answer
    written = out.getvalue() + err.getvalue() + caplog.text
    assert "direct invoke" in written, "the test did not capture the function's log lines"
    secrets = [answer["token"], answer["token"].split("X-Amz-Signature=")[1],
               session.get_credentials().token, session.get_credentials().secret_key]
    for payload in [good, *refused]:
        authorization = payload["identity"]["headers"]["Authorization"]
        secrets += [authorization, authorization.split("Signature=")[1],
                    payload["identity"]["headers"]["X-Amz-Security-Token"]]
    for secret in secrets:
        assert secret not in written
