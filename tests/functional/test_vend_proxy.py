"""Vending for ``proxy`` databases through the Chalice app, with moto's RDS: the answer is the
proxy's host and port (not its target's), and the token is signed for the proxy's endpoint."""
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
from tests.support.policies import ACCT, policy_text, rule
from tests.support.proxies import create_instance, create_proxy, proxy_database, proxy_subnets

REGION = "us-east-1"
POLICY = policy_text(
    [proxy_database(region=REGION, users="orders_app: {auth: iam, tier: service-user}", extra="dbname: orders"),
     proxy_database("shop-proxy", engine="mariadb", region=REGION, target="shop-maria",
                    users="shop_app: {auth: iam, tier: service-user}")],
    [rule("all", [f"arn:aws:iam::{ACCT}:role/app-*"], ["*"], ["*"])])


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    with mock_aws():
        rds = boto3.client("rds", region_name=REGION)
        subnets = proxy_subnets(REGION)
        proxies = {}
        for ident, engine, version, family, name in (("orders-prod", "postgres", "15.4", "POSTGRESQL", "orders-proxy"),
                                                     ("shop-maria", "mariadb", "10.11.9", "MYSQL", "shop-proxy")):
            create_instance(rds, ident, engine, version)
            proxies[name] = create_proxy(rds, name, f"arn:aws:iam::{ACCT}:role/{name}-role", subnets, family=family,
                                         instances=[ident])
        svc = VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "t.yaml")),
                             minter=TokenMinter(), resolver=EndpointResolver(ClientFactory()))
        set_vending_service(svc)
        yield {"proxies": proxies,
               "targets": {i: rds.describe_db_instances(DBInstanceIdentifier=i)["DBInstances"][0]["Endpoint"]
                           for i in ("orders-prod", "shop-maria")}}
        set_vending_service(None)


def vend(database: str, user: str) -> tuple[int, Any]:
    ev = load_event("post_tokens")
    ev["requestContext"]["identity"].update(userArn=f"arn:aws:sts::{ACCT}:assumed-role/app-api/i-1",
                                           accountId=ACCT, principalOrgId="o-abc123def4", sourceIp="10.1.2.3")
    ev["body"] = json.dumps({"database": database, "db_user": user})
    answer = app_module.app(ev, None)
    return answer["statusCode"], json.loads(answer["body"])


@pytest.mark.parametrize(("database", "user", "target", "port"), [
    ("orders-proxy", "orders_app", "orders-prod", 5432), ("shop-proxy", "shop_app", "shop-maria", 3306)])
def test_the_answer_is_the_proxy_endpoint_and_the_token_is_signed_for_it(
    world: dict[str, Any],
    database: str,
    user: str,
    target: str,
    port: int,
) -> None:
    status, body = vend(database, user)
    assert status == 200, body
    proxy_host = world["proxies"][database]["Endpoint"]
    assert (body["host"], body["port"]) == (proxy_host, port)
    assert body["host"] != world["targets"][target]["Address"]
    assert body["token"].startswith(f"{proxy_host}:{port}/?Action=connect&DBUser={user}&")
