"""Aurora DSQL databases: loading them, and vending through the Chalice app. ``admin`` is
signed with DbConnectAdmin, custom roles with DbConnect; the token is botocore's byte for
byte, lasts the rule's ttl_seconds (never beyond the signing credentials), and the answer
points the client at the system's public roots, not the RDS bundle."""
from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

import botocore.session
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource

import app as app_module
from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.rds import EndpointResolver
from chalicelib.clock import FrozenClock
from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.routes.http import set_vending_service
from chalicelib.signer import TokenMinter
from chalicelib.signer.credentials import SigningCredentials, StaticCredentialsProvider
from chalicelib.signer.roles import RoleRequest
from chalicelib.vending.pipeline import VendingService
from tests.support.events import load_event

ACCT = "111122223333"
CLUSTER = "abcdefghijklmnopqrstuvwxyz"
POLICY = textwrap.dedent(f"""
    version: 1
    databases:
      ledger:
        engine: dsql
        region: us-east-1
        cluster: {CLUSTER}
        users:
          admin: {{auth: iam}}
          app_rw: {{auth: iam, action: DbConnect}}
    rules:
      - id: ledger-admin
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/ops"]
        databases: [ledger]
        db_users: [admin]
        ttl_seconds: 3600
      - id: ledger-app
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/app"]
        databases: [ledger]
        db_users: [app_rw]
    """)
OPENAPI = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())
NOW = datetime(2026, 12, 3, 20, 0, 0, tzinfo=UTC)
CREDS = SigningCredentials("ASIADSQLEXAMPLE00001", "dsql/secret+key", "session-token/=", NOW + timedelta(hours=6))


def service(policy: str = POLICY, creds: SigningCredentials = CREDS, **minter: Any) -> VendingService:
    clock = FrozenClock(NOW)
    return VendingService(policy_source=StaticPolicySource(load_policy_text(policy, "t.yaml")),
                          minter=TokenMinter(clock=clock, credentials=StaticCredentialsProvider(creds), **minter),
                          resolver=EndpointResolver(ClientFactory()), clock=clock)


def vend(svc: VendingService, role: str, db_user: str) -> tuple[int, dict[str, Any]]:
    set_vending_service(svc)
    try:
        ev = load_event("post_tokens")
        ev["requestContext"]["identity"].update(userArn=f"arn:aws:sts::{ACCT}:assumed-role/{role}/s-1",
                                               accountId=ACCT, principalOrgId="o-abc123def4", sourceIp="10.1.2.3")
        ev["body"] = json.dumps({"database": "ledger", "db_user": db_user})
        answer = app_module.app(ev, None)
    finally:
        set_vending_service(None)
    return answer["statusCode"], json.loads(answer["body"])


def botocore_token(creds: SigningCredentials, host: str, action: str, expires: int) -> str:
    client: Any = botocore.session.get_session().create_client(
        "dsql", region_name="us-east-1", aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key, aws_session_token=creds.token)
    generate = (client.generate_db_connect_admin_auth_token if action == "DbConnectAdmin"
                else client.generate_db_connect_auth_token)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        return str(generate(Hostname=host, Region="us-east-1", ExpiresIn=expires))


def test_database_defaults() -> None:
    db = load_policy_text(POLICY, "t.yaml").databases["ledger"]
    assert (db.engine, db.identifier, db.host, db.port, db.dbname) == \
        ("dsql", CLUSTER, f"{CLUSTER}.dsql.us-east-1.on.aws", 5432, "postgres")
    assert db.dsql_action("admin") == "DbConnectAdmin" and db.dsql_action("app_rw") == "DbConnect"


@pytest.mark.parametrize("role,user,action,ttl", [("ops", "admin", "DbConnectAdmin", 3600),
                                                  ("app", "app_rw", "DbConnect", 900)])
def test_answer_is_a_dsql_token_equal_to_botocores(role: str, user: str, action: str, ttl: int) -> None:
    status, body = vend(service(), role, user)
    assert status == 200, body
    host = f"{CLUSTER}.dsql.us-east-1.on.aws"
    assert (body["engine"], body["host"], body["port"], body["dbname"]) == ("dsql", host, 5432, "postgres")
    assert (body["sslmode"], body["ssl_root_cert"]) == ("verify-full", "system")
    assert body["token"] == botocore_token(CREDS, host, action, ttl)
    assert parse_qs(body["token"].split("?", 1)[1])["Action"] == [action]
    assert body["ttl_seconds"] == ttl - 30 and body["expires_at"] == (NOW + timedelta(seconds=ttl - 30)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert body["dsn"] == f"host={host} port=5432 dbname=postgres user={user} sslmode=verify-full"
    assert body["token"] not in body["dsn"] and "auth_plugin" not in body
    registry = Registry().with_resource("urn:spec", Resource.opaque(OPENAPI))
    OAS30Validator({"$ref": "urn:spec#/components/schemas/Token"}, registry=registry).validate(body)


def test_lifetime_never_beyond_the_signing_credentials() -> None:
    short = SigningCredentials("ASIADSQLEXAMPLE00002", "k", "t", NOW + timedelta(minutes=20))
    status, body = vend(service(creds=short), "ops", "admin")
    assert status == 200
    assert body["ttl_seconds"] == 20 * 60 - 30  # the credentials end first, not the rule's hour


def test_signer_role_session_may_only_connect_to_this_cluster() -> None:
    seen: list[RoleRequest] = []

    def assume(request: RoleRequest) -> SigningCredentials:
        seen.append(request)
        return CREDS

    policy = POLICY.replace("cluster: abc", f"signer_role: arn:aws:iam::{ACCT}:role/dsql-signer\n    cluster: abc")
    status, _body = vend(service(policy, assume_role=assume), "app", "app_rw")
    assert status == 200
    document = json.loads(seen[0].policy)
    assert document["Statement"] == [{"Effect": "Allow", "Action": "dsql:DbConnect",
                                      "Resource": f"arn:aws:dsql:us-east-1:{ACCT}:cluster/{CLUSTER}"}]


def test_a_caller_without_a_rule_gets_nothing() -> None:
    status, body = vend(service(), "app", "admin")
    assert status == 403 and "token" not in body


def _load_error(policy: str) -> str:
    with pytest.raises(PolicyLoadError) as err:
        load_policy_text(policy, "t.yaml")
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("change,field,words", [
    (("    cluster: abcdefghijklmnopqrstuvwxyz\n", ""), "databases.ledger.cluster", "needs 'cluster'"),
    (("cluster: abcdefghijklmnopqrstuvwxyz", "cluster: my-ledger"), "databases.ledger.cluster",
     "invalid DSQL cluster id 'my-ledger'"),
    (("app_rw: {auth: iam, action: DbConnect}", "app_rw: {auth: iam, action: DbConnectAdmin}"),
     "databases.ledger.users.app_rw.action", "only the 'admin' role is signed with DbConnectAdmin"),
    (("admin: {auth: iam}", "admin: {auth: iam, action: DbConnect}"),
     "databases.ledger.users.admin.action", "the 'admin' role is signed with DbConnectAdmin"),
    (("region: us-east-1", "region: us-east"), "databases.ledger.region", "invalid region 'us-east'"),
    (("region: us-east-1", "region: US-EAST-1"), "databases.ledger.region", "invalid region"),
    (("app_rw: {auth: iam, action: DbConnect}", "app_rw: {auth: password}"),
     "databases.ledger.users.app_rw.auth", "IAM tokens only"),
    (("cluster: abc", "instance: x\n    cluster: abc"), "databases.ledger.instance", "does not apply"),
    (("cluster: abc", "resource_id: cluster-ABC\n    cluster: abc"), "databases.ledger.resource_id",
     "does not apply"),
    (("app_rw: {auth: iam, action: DbConnect}", "app_rw: {auth: iam, action: connect}"),
     "databases.ledger.users.app_rw.action", "invalid action 'connect'"),
    (("ttl_seconds: 3600", "ttl_seconds: 3601"), "ttl_seconds", "expected 60-3600"),
    (("ttl_seconds: 3600", "ttl_seconds: '900'"), "ttl_seconds", "invalid ttl_seconds"),
])
def test_load_errors_name_the_field(change: tuple[str, str], field: str, words: str) -> None:
    message = _load_error(POLICY.replace(*change))
    assert f"'{field}'" in message and words in message


def test_action_key_is_for_dsql_only() -> None:
    policy = POLICY.replace("engine: dsql", "engine: postgres").replace("cluster: abc", "cluster: x-abc")
    assert "'action' applies only to Aurora DSQL" in _load_error(policy)
