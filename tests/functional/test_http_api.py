"""The HTTP API end to end through the Chalice app, with moto for RDS and SSM."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

import app as app_module
from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.rds import EndpointResolver
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import FilePolicySource, StaticPolicySource
from chalicelib.routes.http import set_vending_service
from chalicelib.signer import TokenMinter
from chalicelib.vending.pipeline import VendingService
from chalicelib.vending.ratelimit import RateLimiter
from tests.support.events import load_event, token_event
from tests.support.policies import ACCT, POLICY


@pytest.fixture(scope="module")
def aws() -> Iterator[Any]:
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        rds.create_db_instance(DBInstanceIdentifier="orders-prod", Engine="postgres", DBInstanceClass="db.t3.micro",
                               MasterUsername="admin", MasterUserPassword="not-a-real-one", Port=5432,
                               EnableIAMDatabaseAuthentication=True)
        yield rds


@pytest.fixture
def service(aws: Any) -> Iterator[VendingService]:
    svc = VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "test.yaml")),
                         minter=TokenMinter(), resolver=EndpointResolver(ClientFactory()))
    set_vending_service(svc)
    yield svc
    set_vending_service(None)


def call(event: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    answer = app_module.app(event, None)
    body = json.loads(answer["body"])
    return answer["statusCode"], body, answer["headers"]


def test_vend_returns_the_spec_body(service: VendingService) -> None:
    before = datetime.now(UTC)
    status, body, headers = call(token_event())
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert set(body) == {"token", "expires_at", "ttl_seconds", "database", "db_user", "engine", "host", "port",
                         "dbname", "region", "sslmode", "ssl_root_cert", "dsn", "rule"}
    host = body["host"]
    assert host.startswith("orders-prod.") and body["port"] == 5432
    assert body["token"].startswith(f"{host}:5432/?Action=connect&DBUser=orders_app")
    assert body["dsn"] == f"host={host} port=5432 dbname=orders user=orders_app sslmode=verify-full"
    assert body["token"] not in body["dsn"]
    assert (body["sslmode"], body["ssl_root_cert"], body["rule"], body["engine"], body["region"]) == (
        "verify-full", "rds-global-bundle.pem", "orders-api", "postgres", "us-east-1")
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 0 < (expires - before).total_seconds() <= 871  # X-Amz-Date has whole seconds
    assert 800 <= body["ttl_seconds"] <= 870


def test_policy_host_and_port_win_over_rds(service: VendingService) -> None:
    status, body, _ = call(token_event({"database": "reports", "db_user": "reporter"},
                                       arn=f"arn:aws:sts::{ACCT}:assumed-role/dba-alice/alice"))
    assert status == 200
    assert (body["host"], body["port"], body["dbname"]) == ("reports.internal.example", 6432, None)
    assert body["dsn"] == "host=reports.internal.example port=6432 user=reporter sslmode=verify-full"


FORBIDDEN_CASES: dict[str, dict[str, Any]] = {
    "wrong org": dict(org="o-zzzzzzzzzz"),
    "no org id": dict(org=None),
    "outside source ips": dict(ip="192.0.2.10"),
    "another account": dict(arn="arn:aws:sts::999988887777:assumed-role/orders-api-blue/i-1"),
    "other role": dict(arn=f"arn:aws:sts::{ACCT}:assumed-role/billing-api/i-1"),
    "user not in rule": dict(body={"database": "orders-prod", "db_user": "orders_owner"}),
    "deny beats allow": dict(arn=f"arn:aws:sts::{ACCT}:assumed-role/dba-ci/ci",
                             body={"database": "orders-prod", "db_user": "orders_owner"}),
    "kerberos user": dict(arn=f"arn:aws:sts::{ACCT}:assumed-role/dba-alice/a",
                          body={"database": "orders-prod", "db_user": "etl_legacy"}),
    "unknown database": dict(body={"database": "nope", "db_user": "orders_app"}),
    "unknown user": dict(body={"database": "orders-prod", "db_user": "nobody"}),
    "root user": dict(arn=f"arn:aws:iam::{ACCT}:root"),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN_CASES))
def test_authorization_matrix_refusals_look_identical(service: VendingService, case: str) -> None:
    status, body, headers = call(token_event(**FORBIDDEN_CASES[case]))
    assert status == 403
    assert body == {"error": {"code": "forbidden", "message": "not allowed",
                              "request_id": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"}}
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "arn, db_user",
    [
        (f"arn:aws:sts::{ACCT}:assumed-role/dba-ci/ci", "orders_app"),  # deny is only on orders_owner
        (f"arn:aws:sts::{ACCT}:assumed-role/dba-alice/alice", "orders_owner"),
        ("arn:aws:sts::444455556666:assumed-role/auditor/x", "orders_app"),  # another account, named
    ],
)
def test_authorization_matrix_allows(service: VendingService, arn: str, db_user: str) -> None:
    status, body, _ = call(token_event({"database": "orders-prod", "db_user": db_user}, arn=arn, org=None, ip=None))
    assert status == 200, body
    assert body["rule"] == "dba"


@pytest.mark.parametrize(
    "raw, field",
    [
        ("not json", "body"),
        ("", "body"),
        ("[]", "body"),
        ("null", "body"),
        ('"orders-prod"', "body"),
        ('{"database": "orders-prod"}', "db_user"),
        ('{"db_user": "orders_app"}', "database"),
        ('{"database": "orders-prod", "db_user": "orders_app", "ttl": 900}', "ttl"),
        ('{"database": 7, "db_user": "orders_app"}', "database"),
        ('{"database": "orders-prod", "db_user": null}', "db_user"),
        ('{"database": "orders-prod", "db_user": ["orders_app"]}', "db_user"),
        (json.dumps({"database": "x" * 5000, "db_user": "orders_app"}), "database"),
        (json.dumps({"database": "orders-prod", "db_user": "a" * 5000}), "db_user"),
        ('{"database": "orders-prod", "db_user": "x\\u0000; DROP ROLE"}', "db_user"),
        ("[" * 100000, "body"),
        ("{" + '"a":1,' * 5000 + '"b":2}', "body"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(service: VendingService, raw: str, field: str) -> None:
    status, body, _ = call(token_event(raw=raw))
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert field in body["error"]["message"] or field == "body"
    assert "Traceback" not in json.dumps(body)


def test_no_identity_is_401(service: VendingService) -> None:
    ev = token_event()
    ev["requestContext"]["identity"] = {"sourceIp": "10.1.2.3", "userArn": None}
    status, body, _ = call(ev)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")


def test_rds_not_knowing_the_database_is_503_with_retry_after(service: VendingService) -> None:
    status, body, headers = call(token_event({"database": "ghost", "db_user": "ghost_app"},
                                             arn=f"arn:aws:sts::{ACCT}:assumed-role/dba-alice/a"))
    assert status == 503 and body["error"]["code"] == "upstream_unavailable"
    assert int(headers["Retry-After"]) > 0


def test_rds_throttling_is_503_never_500(aws: Any) -> None:
    client = boto3.client("rds", region_name="us-east-1")
    stub = Stubber(client)
    for _ in range(5):
        stub.add_client_error("describe_db_instances", service_error_code="Throttling", http_status_code=400)
    stub.activate()
    svc = VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "test.yaml")),
                         minter=TokenMinter(), resolver=EndpointResolver(lambda service, region: client))
    set_vending_service(svc)
    try:
        status, body, headers = call(token_event())
    finally:
        set_vending_service(None)
    assert status == 503 and body["error"]["code"] == "upstream_unavailable"
    assert headers["Retry-After"] == "2"


def test_policy_that_does_not_load_refuses_everything_and_says_so(aws: Any, tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "access.yaml"
    bad.write_text(POLICY.replace("effect: deny", "effect: maybe"))
    set_vending_service(VendingService(policy_source=FilePolicySource(bad), minter=TokenMinter(),
                                       resolver=EndpointResolver(ClientFactory())))
    try:
        status, body, _ = call(token_event())
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body, _ = call(load_event("get_databases"))
        assert status == 403
        out = capfd.readouterr().out
        assert "access policy did not load" in out and "invalid effect 'maybe'" in out
        bad.write_text(POLICY)  # fixed: served again without a restart
        assert call(token_event())[0] == 200
    finally:
        set_vending_service(None)


def test_databases_lists_only_what_the_caller_may_ask_for(service: VendingService) -> None:
    ev = load_event("get_databases")
    status, body, headers = call(ev)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert [d["database"] for d in body["databases"]] == ["orders-prod"]
    entry = body["databases"][0]
    assert set(entry) == {"database", "engine", "host", "port", "dbname", "region", "db_users"}
    assert entry["db_users"] == ["orders_app"] and entry["port"] == 5432
    ev["requestContext"]["identity"]["userArn"] = f"arn:aws:sts::{ACCT}:assumed-role/dba-ci/ci"
    status, body, _ = call(ev)
    listed = {d["database"]: d["db_users"] for d in body["databases"]}
    assert listed["orders-prod"] == ["orders_app"] and listed["reports"] == ["reporter"]


def test_whoami(service: VendingService) -> None:
    status, body, _ = call(load_event("get_whoami"))
    assert status == 200
    assert body == {"principal": f"arn:aws:iam::{ACCT}:role/orders-api-blue",
                    "arn": f"arn:aws:sts::{ACCT}:assumed-role/orders-api-blue/i-0abc123",
                    "account": ACCT, "org_id": "o-abc123def4", "session": "i-0abc123"}


def test_rate_limited_caller_gets_429_with_retry_after(aws: Any) -> None:
    svc = VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "test.yaml")),
                         minter=TokenMinter(), resolver=EndpointResolver(ClientFactory()),
                         rate_limiter=RateLimiter(0.5, 2))
    set_vending_service(svc)
    try:
        assert [call(token_event())[0] for _ in range(2)] == [200, 200]
        status, body, headers = call(token_event())
    finally:
        set_vending_service(None)
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) >= 1


def test_unexpected_failure_is_a_bare_500(aws: Any) -> None:
    class Broken:
        def mint(self, **kwargs: Any) -> Any:
            raise RuntimeError("secret detail that must not leak")

    svc = VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "test.yaml")),
                         minter=Broken(), resolver=EndpointResolver(ClientFactory()))
    set_vending_service(svc)
    try:
        status, body, _ = call(token_event())
    finally:
        set_vending_service(None)
    assert status == 500
    assert body["error"]["code"] == "internal" and "secret detail" not in json.dumps(body)


@pytest.mark.parametrize("event_name", ["get_databases", "get_whoami"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"])
def test_get_routes_answer_whatever_content_type_a_client_sends(service: VendingService, event_name: str,
                                                                content_type: str) -> None:
    # a GET has no body: its Content-Type is meaningless, never a 415
    ev = load_event(event_name)
    ev["headers"] = {**(ev.get("headers") or {}), "Content-Type": content_type}
    ev["multiValueHeaders"] = {**(ev.get("multiValueHeaders") or {}), "Content-Type": [content_type]}
    status, body, _ = call(ev)
    assert status == 200 and "error" not in body


def test_wrong_method_gets_the_error_model(service: VendingService) -> None:
    ev = load_event("get_whoami")
    ev["httpMethod"] = ev["requestContext"]["httpMethod"] = "DELETE"
    status, body, _ = call(ev)
    assert status == 405 and body["error"]["code"] == "invalid_request"


def test_audit_line_per_decision_and_no_secret_anywhere(service: VendingService, capfd: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    status, body, _ = call(token_event())
    assert status == 200
    denied = call(token_event(ip="192.0.2.1"))
    assert denied[0] == 403
    out, err = capfd.readouterr()
    everything = out + err + caplog.text
    token = body["token"]
    signature = token.rsplit("X-Amz-Signature=", 1)[1]
    assert signature not in everything and token not in everything
    assert "testing" not in [json.loads(line).get("secret") for line in out.splitlines() if line.startswith("{")]
    audits = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"event": "vend"' in line
              or line.startswith("{") and '"event":"vend"' in line]
    assert [(a["decision"], a["reason"], a["rule"]) for a in audits] == [
        ("allow", "allowed", "orders-api"), ("deny", "condition_not_met", None)]
    allow = audits[0]
    assert allow["principal"] == f"arn:aws:iam::{ACCT}:role/orders-api-blue"
    assert allow["expires_at"] == body["expires_at"] and allow["session"] == "i-1"
    assert allow["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    metrics = [json.loads(line) for line in out.splitlines() if line.startswith("{") and "_aws" in line]
    names = {m["Name"] for doc in metrics for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"TokensVended", "RequestsDenied"} <= names
