"""A password user is never vended: the HTTP API answers 403 exactly as for any refusal,
even to a caller a rule allows every user of the database."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

import app as app_module
from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.rds import EndpointResolver
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.routes.http import set_vending_service
from chalicelib.signer import TokenMinter
from chalicelib.vending.pipeline import VendingService
from tests.support.events import load_event
from tests.support.policies import ACCT, one_database_policy, rule

SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCT}:secret:rdsvend/orders/reports_legacy"
POLICY = one_database_policy(
    users="orders_app: {auth: iam, tier: service-user}\n"
          f'reports_legacy: {{auth: password, tier: service-user, rotation: alternating-users, secret: "{SECRET}"}}',
    extra="dbname: orders", rules=[rule("dba", [f"arn:aws:iam::{ACCT}:role/dba-*"], ["*"], ["*"])])


@pytest.fixture
def service() -> Iterator[VendingService]:
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        rds.create_db_instance(DBInstanceIdentifier="orders-prod", Engine="postgres", DBInstanceClass="db.t3.micro",
                               MasterUsername="admin", MasterUserPassword="not-a-real-one", Port=5432,
                               EnableIAMDatabaseAuthentication=True)
        svc = VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "test.yaml")),
                             minter=TokenMinter(), resolver=EndpointResolver(ClientFactory()))
        set_vending_service(svc)
        yield svc
        set_vending_service(None)


def call(db_user: str) -> tuple[int, Any]:
    ev = load_event("post_tokens")
    ident = ev["requestContext"]["identity"]
    arn = f"arn:aws:sts::{ACCT}:assumed-role/dba-alice/alice"
    ident.update(userArn=arn, accountId=ACCT, principalOrgId="o-abc123def4", sourceIp="10.1.2.3")
    ev["body"] = json.dumps({"database": "orders-prod", "db_user": db_user})
    answer = app_module.app(ev, None)
    return answer["statusCode"], json.loads(answer["body"])


def test_password_user_is_refused_like_any_other_refusal(service: VendingService) -> None:
    ok_status, ok_body = call("orders_app")
    assert ok_status == 200, ok_body  # the same caller gets IAM users of that database
    status, body = call("reports_legacy")
    unknown_status, unknown_body = call("nobody")
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    assert "token" not in body
    # indistinguishable from an unknown user: nothing tells the caller the user exists
    assert (status, body["error"]["message"]) == (unknown_status, unknown_body["error"]["message"])
