"""``rdsvend policy render`` for RDS Proxy databases, against moto's RDS: two labelled legs.
Leg 1, the signer's ``rds-db:connect`` on ``dbuser:prx-.../USER``; leg 2, what the proxy's role
needs to reach its target (``iam``: ``rds-db:connect`` on the target's ``db-``/``cluster-`` id;
``secrets``: ``secretsmanager:GetSecretValue`` on its secrets and ``kms:Decrypt`` through
Secrets Manager). Each leg's document is then simulated with ``rdsvend simulate``."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws

from chalicelib.iam.rdsdb import dbuser_arn
from devtools.cli.main import cli
from tests.support.policies import ORDERS_USERS, policy_text, rule
from tests.support.proxies import (
    create_cluster,
    create_instance,
    create_proxy,
    proxy_database,
    proxy_subnets,
    prx_id,
    reports_proxy,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
SIGNER = f"arn:aws:iam::{ACCOUNT}:role/rdsvend-signer"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds-proxy/reports_ro-AbCdEf"

ORDERS = proxy_database(users=ORDERS_USERS, extra=f"signer_role: {SIGNER}")
RULES = [rule("all", [f"arn:aws:iam::{ACCOUNT}:role/app-*"], ["*"], ["*"])]
POLICY = policy_text(
    [ORDERS, reports_proxy(extra=f"signer_role: {SIGNER}")],
    RULES)

pytestmark = pytest.mark.usefixtures("fresh_client_cache")


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, str]]:
    with mock_aws():
        rds = boto3.client("rds", region_name=REGION)
        subnets = proxy_subnets(REGION)
        instance = create_instance(rds, "orders-prod")
        cluster = create_cluster(rds, "reports-aurora", "aurora-mysql")
        orders = create_proxy(rds, "orders-proxy", f"arn:aws:iam::{ACCOUNT}:role/orders-proxy", subnets)
        reports = create_proxy(rds, "reports-proxy", f"arn:aws:iam::{ACCOUNT}:role/reports-proxy", subnets,
                               family="MYSQL", user="reports_ro", secret=SECRET)
        yield {"instance_rid": instance["DbiResourceId"], "cluster_rid": cluster["DbClusterResourceId"],
               "orders_prx": prx_id(orders), "reports_prx": prx_id(reports)}


def render(tmp_path: Path, text: str = POLICY, *args: str) -> Result:
    path = tmp_path / "access.yaml"
    path.write_text(text)
    return CliRunner().invoke(cli, ["policy", "render", str(path), *args])


def test_two_labelled_legs_for_both_modes(world: dict[str, str], tmp_path: Path) -> None:
    out = render(tmp_path)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    (signer,) = doc["signer_policies"]
    assert signer["leg"] == 1 and signer["signer"] == SIGNER
    assert signer["policy"]["Statement"][0]["Resource"] == sorted([
        dbuser_arn(REGION, ACCOUNT, world["orders_prx"], "orders_app"),
        dbuser_arn(REGION, ACCOUNT, world["orders_prx"], "orders_owner"),
        dbuser_arn(REGION, ACCOUNT, world["reports_prx"], "reports_ro")])
    legs = {leg["database"]: leg for leg in doc["proxy_role_policies"]}
    iam = legs["orders-proxy"]
    assert (iam["leg"], iam["role"], iam["target_instance"], iam["target_auth"]) == (
        2, f"arn:aws:iam::{ACCOUNT}:role/orders-proxy", "orders-prod", "iam")
    assert iam["policy"] == {"Version": "2012-10-17", "Statement": [{
        "Sid": "ProxyConnectToTarget", "Effect": "Allow", "Action": "rds-db:connect",
        "Resource": [dbuser_arn(REGION, ACCOUNT, world["instance_rid"], "orders_app"),
                     dbuser_arn(REGION, ACCOUNT, world["instance_rid"], "orders_owner")]}]}
    secrets = legs["reports-proxy"]
    assert (secrets["target_cluster"], secrets["target_auth"], secrets["target_resource_id"]) == (
        "reports-aurora", "secrets", world["cluster_rid"])
    read, decrypt = secrets["policy"]["Statement"]
    assert (read["Action"], read["Resource"]) == ("secretsmanager:GetSecretValue", [SECRET])
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}}


def test_leg_two_simulates_allowed_on_the_target_and_nowhere_else(world: dict[str, str], tmp_path: Path) -> None:
    one = policy_text([ORDERS], RULES)
    out = render(tmp_path, one, "--only", "proxy-role")
    assert out.exit_code == 0, out.output
    role_file = tmp_path / "proxy-role.json"
    role_file.write_text(out.output)

    def simulate(rid: str, user: str) -> Result:
        return CliRunner().invoke(cli, ["simulate", "--action", "rds-db:connect", "--resource",
                                        dbuser_arn(REGION, ACCOUNT, rid, user), "--identity-policy",
                                        str(role_file), "--json"])

    assert json.loads(simulate(world["instance_rid"], "orders_app").output)["decision"] == "allowed"
    # the proxy's role is not the caller: nothing on the proxy's own prx- id, nor other users
    assert json.loads(simulate(world["orders_prx"], "orders_app").output)["decision"] == "implicitDeny"
    assert json.loads(simulate(world["instance_rid"], "postgres").output)["decision"] == "implicitDeny"


def test_only_proxy_role_with_two_proxies_is_one_line_exit_2(world: dict[str, str], tmp_path: Path) -> None:
    out = render(tmp_path, POLICY, "--only", "proxy-role")
    assert out.exit_code == 2 and "exactly one proxy database, the policy has 2" in out.output
    assert "Traceback" not in out.output


def test_a_target_rds_does_not_know_is_one_line_exit_2(world: dict[str, str], tmp_path: Path) -> None:
    out = render(tmp_path, POLICY.replace("target_cluster: reports-aurora", "target_cluster: gone"))
    assert out.exit_code == 2
    lines = [line for line in out.output.splitlines() if line]
    assert len(lines) == 1 and "gone" in lines[0] and "reports-proxy" in lines[0]


def test_a_secrets_proxy_without_a_secret_is_one_line_exit_2(world: dict[str, str], tmp_path: Path) -> None:
    out = render(tmp_path, POLICY.replace("target_instance: orders-prod\n    target_auth: iam",
                                          "target_instance: orders-prod\n    target_auth: secrets"))
    assert out.exit_code == 2
    assert "proxy 'orders-proxy' names no secret in its auth settings" in out.output
