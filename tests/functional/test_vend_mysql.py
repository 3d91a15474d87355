"""Vending for MySQL-family databases (MariaDB instance, Aurora MySQL cluster) through the
Chalice app, with moto for RDS: port 3306 by default, the ``mysql://`` dsn without the token,
``auth_plugin``, tokens byte-identical to botocore's, the answer valid against openapi.yaml."""
from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

import boto3
import botocore.session
import pytest
import yaml
from moto import mock_aws
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource

import app as app_module
from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.rds import EndpointResolver
from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.routes.http import set_vending_service
from chalicelib.signer import TokenMinter
from chalicelib.vending.pipeline import VendingService
from tests.support.events import load_event

ACCT = "111122223333"
POLICY = textwrap.dedent(f"""
    version: 1
    databases:
      shop-maria:
        engine: mariadb
        region: us-east-1
        instance: shop-maria
        dbname: shop
        users:
          shop_app: {{auth: iam, tier: service-user}}
      shop-aurora:
        engine: mysql
        region: us-east-1
        cluster: shop-aurora
        users:
          shop_app: {{auth: iam}}
    rules:
      - id: shop
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/shop-*"]
        databases: ["*"]
        db_users: ["*"]
    """)
OPENAPI = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())


@pytest.fixture(scope="module")
def service() -> Iterator[VendingService]:
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        rds.create_db_instance(DBInstanceIdentifier="shop-maria", Engine="mariadb", EngineVersion="10.11.9", DBInstanceClass="db.t3.micro",
                               MasterUsername="admin", MasterUserPassword="not-a-real-one",
                               EnableIAMDatabaseAuthentication=True)
        rds.create_db_cluster(DBClusterIdentifier="shop-aurora", Engine="aurora-mysql", MasterUsername="admin",
                              MasterUserPassword="not-a-real-one", EnableIAMDatabaseAuthentication=True)
        svc = VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "t.yaml")),
                             minter=TokenMinter(), resolver=EndpointResolver(ClientFactory()))
        set_vending_service(svc)
        yield svc
        set_vending_service(None)


def vend(database: str) -> tuple[int, Any]:
    ev = load_event("post_tokens")
    ev["requestContext"]["identity"].update(userArn=f"arn:aws:sts::{ACCT}:assumed-role/shop-api/i-1",
                                           accountId=ACCT, principalOrgId="o-abc123def4", sourceIp="10.1.2.3")
    ev["body"] = json.dumps({"database": database, "db_user": "shop_app"})
    answer = app_module.app(ev, None)
    return answer["statusCode"], json.loads(answer["body"])


def botocore_token(host: str, port: int, user: str, amz_date: str) -> str:
    session = botocore.session.get_session()
    client: Any = session.create_client("rds", region_name="us-east-1")
    at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        return str(client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region="us-east-1"))


def validate_against_openapi(body: Any) -> None:
    registry = Registry().with_resource("urn:spec", Resource.opaque(OPENAPI))
    OAS30Validator({"$ref": "urn:spec#/components/schemas/Token"}, registry=registry).validate(body)


@pytest.mark.parametrize("database,dbname", [("shop-maria", "shop"), ("shop-aurora", None)])
def test_mysql_family_answer(service: VendingService, database: str, dbname: str | None) -> None:
    status, body = vend(database)
    assert status == 200, body
    host, port = body["host"], body["port"]
    assert port == 3306
    assert body["auth_plugin"] == "mysql_clear_password"
    assert body["dsn"] == f"mysql://shop_app@{host}:3306/{dbname or ''}?ssl-mode=VERIFY_IDENTITY"
    assert body["token"] not in body["dsn"]
    token = body["token"]
    assert token.startswith(f"{host}:3306/?Action=connect&DBUser=shop_app&")
    amz_date = parse_qs(token.split("?", 1)[1])["X-Amz-Date"][0]
    assert token == botocore_token(host, 3306, "shop_app", amz_date)
    validate_against_openapi(body)


def test_postgres_answer_has_no_auth_plugin() -> None:
    policy = load_policy_text(POLICY.replace("engine: mariadb", "engine: postgres"), "t.yaml")
    assert policy.databases["shop-maria"].default_port == 5432
    assert policy.databases["shop-aurora"].default_port == 3306


@pytest.mark.parametrize("engine", ["oracle", "MySQL", "aurora-mysql", ""])
def test_unknown_engine_is_a_load_error_naming_the_field(engine: str) -> None:
    with pytest.raises(PolicyLoadError) as err:
        load_policy_text(POLICY.replace("engine: mariadb", f"engine: '{engine}'"), "t.yaml")
    assert "databases.shop-maria.engine" in str(err.value)
    assert "postgres, mysql, mariadb or dsql" in str(err.value)
