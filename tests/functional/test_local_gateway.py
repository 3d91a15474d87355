"""The local gateway: SigV4 in front, the API Gateway REST proxy event behind.

A small Chalice app echoes what it was handed, so these tests see exactly the event and
identity the gateway builds; the credentials are a static lookup (no AWS needed).
"""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from chalice import Chalice, IAMAuthorizer, Response

from devtools.local.gateway import Gateway
from devtools.local.sigv4 import Credential, StaticSecretLookup

USER = Credential("AKIAGATEWAYTEST00001", "gateway/test+secret000000000000000000000", None,
                  "arn:aws:iam::333333333333:user/orders-api", "333333333333")
SESSION = Credential("ASIAGATEWAYTEST00001", "gateway/session+secret0000000000000000000", "FQoGZXIvYXdzE" + "t" * 300,
                     "arn:aws:sts::222222222222:assumed-role/rdsvend-function/fn", "222222222222")


STUCK_ENTERED, STUCK_RELEASE = threading.Event(), threading.Event()


def _echo_app() -> Chalice:
    app = Chalice(app_name="echo", debug=False, configure_logs=False)
    auth = IAMAuthorizer()

    def echo(**params: str) -> dict[str, Any]:
        request = app.current_request
        assert request is not None
        raw = request.raw_body
        return {"params": params, "context": request.context, "query": dict(request.query_params or {}),
                "headers": dict(request.headers), "body": (raw.decode() if isinstance(raw, bytes) else raw) or None,
                "path": request.path}

    app.route("/v1/things/{name}", methods=["GET", "POST"], authorizer=auth, content_types=["*/*"])(echo)
    app.route("/v1/whoami", methods=["GET"], authorizer=auth)(lambda: echo())
    app.route("/v1/boom", methods=["GET"], authorizer=auth)(lambda: 1 / 0)

    def stuck() -> dict[str, str]:
        STUCK_ENTERED.set()
        STUCK_RELEASE.wait(20)  # a call upstream that hangs
        request = app.current_request
        assert request is not None
        return {"path": request.path}

    app.route("/v1/stuck", methods=["GET"], authorizer=auth)(stuck)
    app.route("/v1/teapot", methods=["GET"], authorizer=auth)(
        lambda: Response(body="short and stout", status_code=418, headers={"X-Tea": "yes"}))
    return app


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    lookup = StaticSecretLookup([USER, SESSION])
    gw = Gateway(_echo_app(), lookup, region="us-east-1", account="222222222222",
                 org_id_of=lambda account: "o-rdsvend001" if account in ("222222222222", "333333333333") else None,
                 caller_id_of=lambda credential: f"ID-{credential.access_key_id}")
    gw.start()
    yield gw
    gw.stop()


def call(gw: Gateway, method: str, path: str, body: object = None, *, cred: Credential = USER,
         secret: str | None = None, at: datetime | None = None, headers: Mapping[str, str] | None = None,
         timeout: float = 10) -> requests.Response:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = AWSRequest(method=method, url=gw.url + path, data=data, headers=dict(headers or {}))
    creds = Credentials(cred.access_key_id, secret or cred.secret_key, cred.session_token)
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=(at or datetime.now(UTC)).replace(tzinfo=None)):
        SigV4Auth(creds, "execute-api", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return requests.request(method, prepared.url, headers=dict(prepared.headers), data=prepared.body, timeout=timeout)


def test_event_carries_the_identity_the_signature_proves(gateway: Gateway) -> None:
    answer = call(gateway, "GET", "/v1/whoami").json()
    identity = answer["context"]["identity"]
    assert identity["userArn"] == USER.principal_arn
    assert identity["accountId"] == "333333333333"
    assert identity["principalOrgId"] == "o-rdsvend001"
    assert identity["accessKey"] == USER.access_key_id
    assert identity["caller"] == identity["user"] == f"ID-{USER.access_key_id}"
    assert identity["sourceIp"] == "127.0.0.1"
    context = answer["context"]
    assert context["stage"] == "api" and context["resourcePath"] == "/v1/whoami"
    assert context["path"] == "/api/v1/whoami" and context["httpMethod"] == "GET"
    assert context["accountId"] == "222222222222"
    assert len(context["requestId"]) == 36


def test_session_credentials_sign_with_their_token(gateway: Gateway) -> None:
    identity = call(gateway, "GET", "/v1/whoami", cred=SESSION).json()["context"]["identity"]
    assert identity["userArn"] == SESSION.principal_arn


def test_path_and_query_parameters_and_body_reach_the_app(gateway: Gateway) -> None:
    response = call(gateway, "POST", "/v1/things/tea%20pot?size=big&size=small&empty=", {"n": 1},
                    headers={"Content-Type": "application/json", "X-Extra": "1"})
    answer = response.json()
    assert answer["params"] == {"name": "tea pot"}
    assert answer["query"] == {"size": "small", "empty": ""}
    assert json.loads(answer["body"]) == {"n": 1}
    assert answer["path"] == "/v1/things/{name}"
    assert answer["headers"]["x-extra"] == "1"
    assert "x-amzn-requestid" in {k.lower() for k in response.headers}


def test_app_responses_are_mapped_back(gateway: Gateway) -> None:
    response = call(gateway, "GET", "/v1/teapot")
    assert (response.status_code, response.text, response.headers["X-Tea"]) == (418, "short and stout", "yes")


def test_an_app_failure_is_a_bare_500_without_detail(gateway: Gateway) -> None:
    response = call(gateway, "GET", "/v1/boom")
    assert response.status_code == 500
    assert "ZeroDivisionError" not in response.text and "Traceback" not in response.text


@pytest.mark.parametrize("path", ["/v1/whoami", "/v1/nothing-here", "/"])
def test_unsigned_is_missing_authentication_token(gateway: Gateway, path: str) -> None:
    response = requests.get(gateway.url + path, timeout=10)
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_signed_but_unknown_route_or_method_is_missing_authentication_token(gateway: Gateway) -> None:
    for method, path in (("GET", "/v1/elsewhere"), ("DELETE", "/v1/whoami")):
        response = call(gateway, method, path)
        assert response.status_code == 403
        assert response.json() == {"message": "Missing Authentication Token"}


def test_wrong_secret_is_a_signature_mismatch(gateway: Gateway) -> None:
    response = call(gateway, "GET", "/v1/whoami", secret="w" * 40)
    assert response.status_code == 403
    assert response.json()["message"].startswith("The request signature we calculated does not match")
    assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"


def test_stale_and_future_signatures_are_refused(gateway: Gateway) -> None:
    now = datetime.now(UTC)
    stale = call(gateway, "GET", "/v1/whoami", at=now - timedelta(minutes=6))
    assert stale.status_code == 403 and stale.json()["message"].startswith("Signature expired: ")
    future = call(gateway, "GET", "/v1/whoami", at=now + timedelta(minutes=6))
    assert future.status_code == 403 and future.json()["message"].startswith("Signature not yet current: ")
    fresh = call(gateway, "GET", "/v1/whoami", at=now - timedelta(minutes=4))
    assert fresh.status_code == 200


def test_unknown_key_is_an_invalid_security_token(gateway: Gateway) -> None:
    stranger = Credential("AKIASTRANGER00000001", "s" * 40, None, "arn:aws:iam::999999999999:user/x", "999999999999")
    response = call(gateway, "GET", "/v1/whoami", cred=stranger)
    assert response.status_code == 403
    assert response.json() == {"message": "The security token included in the request is invalid."}


def test_session_credentials_without_their_token_are_refused(gateway: Gateway) -> None:
    bare = Credential(SESSION.access_key_id, SESSION.secret_key, None, SESSION.principal_arn, SESSION.account)
    response = call(gateway, "GET", "/v1/whoami", cred=bare)
    assert response.status_code == 403
    assert SESSION.session_token is not None and SESSION.session_token not in response.text


def test_refusals_never_echo_secrets(gateway: Gateway) -> None:
    response = call(gateway, "POST", "/v1/things/x", {"password": "hunter2"}, secret="z" * 40)
    assert response.status_code == 403
    for secret in (USER.secret_key, "hunter2", "Signature="):
        assert secret not in response.text


def test_oversized_bodies_are_refused_before_reading(gateway: Gateway) -> None:
    response = requests.post(gateway.url + "/v1/things/x", headers={"Content-Length": str(11 * 1024 * 1024)},
                             data=b"", timeout=10)
    assert response.status_code == 413


def test_a_request_stuck_upstream_does_not_hold_up_other_callers(gateway: Gateway) -> None:
    stuck: dict[str, requests.Response] = {}
    worker = threading.Thread(target=lambda: stuck.update(answer=call(gateway, "GET", "/v1/stuck")))
    worker.start()
    try:
        assert STUCK_ENTERED.wait(10)
        # while the first request hangs in the function, others are served (one at a time
        # made them wait for it); each identity is its own, not the stuck request's
        for cred in (USER, SESSION):
            answer = call(gateway, "GET", "/v1/whoami", cred=cred, timeout=3).json()
            assert answer["context"]["identity"]["userArn"] == cred.principal_arn
            assert answer["context"]["resourcePath"] == "/v1/whoami"
    finally:
        STUCK_RELEASE.set()
        worker.join(20)
    assert stuck["answer"].json() == {"path": "/v1/stuck"}


def test_an_absolute_form_target_is_refused_not_served_from_another_path(gateway: Gateway) -> None:
    # Signed for the path "//evil/v1/whoami"; sent as the absolute-form target
    # "http://evil/v1/whoami", whose path (/v1/whoami) is not the one signed.
    request = AWSRequest(method="GET", url=gateway.url + "//evil/v1/whoami")
    SigV4Auth(Credentials(USER.access_key_id, USER.secret_key), "execute-api", "us-east-1").add_auth(request)
    lines = ["GET http://evil/v1/whoami HTTP/1.1"] + [f"{k}: {v}" for k, v in request.headers.items()]
    lines += ["Connection: close", "", ""]
    host, port = gateway.url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request", answer[:200]
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {"message": "request target must be a path"}


def test_kept_alive_connections_serve_many_requests_and_the_backlog_takes_bursts(gateway: Gateway) -> None:
    # (its latency, ~40 ms a request before headers and body left in one write, is in make bench)
    with requests.Session() as session:
        for _ in range(3):
            request = AWSRequest(method="GET", url=gateway.url + "/v1/whoami")
            SigV4Auth(Credentials(USER.access_key_id, USER.secret_key), "execute-api", "us-east-1").add_auth(request)
            prepared = request.prepare()
            assert session.get(prepared.url, headers=dict(prepared.headers), timeout=10).status_code == 200
    assert gateway._http.backlog >= 128
