"""``rdsvend policy render`` against moto's RDS (instance, cluster, proxy), then simulated:
every declared (database, iam user) is allowed, anything else is not."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws

from chalicelib.errors import IamFetchError
from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.model import RequestContext, parse_policy
from chalicelib.iam.rdsdb import dbuser_arn
from chalicelib.iam.render import DEFAULT_SIGNER, RenderedPolicies, render_policies
from chalicelib.policy.loader import load_policy_text
from devtools.cli.main import cli
from tests.support.policies import ORDERS_USERS, database, policy_text, rule
from tests.support.proxies import create_cluster, create_instance, create_proxy, proxy_database, proxy_subnets, prx_id

REGION = "us-east-1"
ACCOUNT = "123456789012"
SIGNER = f"arn:aws:iam::{ACCOUNT}:role/rdsvend-signer"

POLICY = policy_text(
    [database(region=REGION, users=ORDERS_USERS + "\netl_legacy:   {auth: kerberos}", extra=f"signer_role: {SIGNER}"),
     database("billing", region=REGION, kind="cluster", identifier="billing-aurora", users="billing_app: {auth: iam}"),
     proxy_database("reports", proxy="reports-proxy", region=REGION, target_auth="secrets",
                    users="reports_ro: {auth: iam}\nreports_pw: {auth: password, secret: "
                          f'"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:reports-pw-AbCdEf"}}',
                    extra=f"signer_role: {SIGNER}")],
    [rule("dba", [f"arn:aws:iam::{ACCOUNT}:role/dba-*"], ["*"], ["*"])])

pytestmark = pytest.mark.usefixtures("fresh_client_cache")


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    with mock_aws():
        rds = boto3.client("rds", region_name=REGION)
        instance = create_instance(rds, "orders-prod")
        cluster = create_cluster(rds, "billing-aurora")
        proxy = create_proxy(rds, "reports-proxy", f"arn:aws:iam::{ACCOUNT}:role/proxy", proxy_subnets(REGION),
                             secret=f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x")
        yield {
            "policy": load_policy_text(POLICY, source="access.yaml"),
            "instance_rid": instance["DbiResourceId"],
            "cluster_rid": cluster["DbClusterResourceId"],
            "proxy_rid": prx_id(proxy),
        }


def _rendered(world: dict[str, Any]) -> RenderedPolicies:
    return render_policies(world["policy"], lambda region: boto3.client("rds", region_name=region))


def test_render_uses_resource_ids_and_only_iam_users(world: dict[str, Any]) -> None:
    rendered = _rendered(world)
    expected_signer = sorted([
        dbuser_arn(REGION, ACCOUNT, world["instance_rid"], "orders_app"),
        dbuser_arn(REGION, ACCOUNT, world["instance_rid"], "orders_owner"),
        dbuser_arn(REGION, ACCOUNT, world["proxy_rid"], "reports_ro"),
    ])
    assert world["proxy_rid"].startswith("prx-") and world["cluster_rid"].startswith("cluster-")
    assert rendered.signer_policies[SIGNER]["Statement"][0]["Resource"] == expected_signer
    assert rendered.signer_policies[DEFAULT_SIGNER]["Statement"][0]["Resource"] == [
        dbuser_arn(REGION, ACCOUNT, world["cluster_rid"], "billing_app")
    ]
    assert sorted(rendered.scp_statement["Resource"]) == sorted(expected_signer + [
        dbuser_arn(REGION, ACCOUNT, world["cluster_rid"], "billing_app")
    ])
    text = json.dumps(rendered.to_dict())
    assert "etl_legacy" not in text and "reports_pw" not in text and "orders-prod/" not in text


def test_rendered_policies_simulate_declared_allowed_undeclared_denied(world: dict[str, Any]) -> None:
    rendered = _rendered(world)
    scp = parse_policy({"Version": "2012-10-17", "Statement": [rendered.scp_statement]}, "scp")
    full_access = parse_policy({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}, "FullAWSAccess")
    signers = {s: parse_policy(doc, s) for s, doc in rendered.signer_policies.items()}
    declared = {
        SIGNER: [(world["instance_rid"], "orders_app"), (world["instance_rid"], "orders_owner"), (world["proxy_rid"], "reports_ro")],
        DEFAULT_SIGNER: [(world["cluster_rid"], "billing_app")],
    }
    for signer, pairs in declared.items():
        for rid, user in pairs:
            request = RequestContext("rds-db:connect", dbuser_arn(REGION, ACCOUNT, rid, user))
            result = evaluate(request, identity_policies=[signers[signer]], scp_levels=[[full_access], [scp]])
            assert result.allowed, result.explanation
    undeclared = [
        (SIGNER, world["instance_rid"], "etl_legacy"),      # kerberos user
        (SIGNER, world["proxy_rid"], "reports_pw"),         # password user
        (SIGNER, world["instance_rid"], "postgres"),        # never declared
        (SIGNER, world["cluster_rid"], "billing_app"),      # another signer's database
        (DEFAULT_SIGNER, world["instance_rid"], "orders_app"),
    ]
    for signer, rid, user in undeclared:
        request = RequestContext("rds-db:connect", dbuser_arn(REGION, ACCOUNT, rid, user))
        assert evaluate(request, identity_policies=[signers[signer]]).decision == "implicitDeny"
    # The SCP statement allows nothing undeclared either.
    stray = RequestContext("rds-db:connect", dbuser_arn(REGION, ACCOUNT, world["instance_rid"], "postgres"))
    everything = parse_policy({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}, "admin")
    result = evaluate(stray, identity_policies=[everything], scp_levels=[[full_access], [scp]])
    assert result.decision == "implicitDeny" and result.layer == "scp"


def test_render_cli_then_simulate_cli(world: dict[str, Any], tmp_path: Path) -> None:
    policy_file = tmp_path / "access.yaml"
    policy_file.write_text(POLICY)
    runner = CliRunner()
    out = runner.invoke(cli, ["policy", "render", str(policy_file), "--only", "scp"])
    assert out.exit_code == 0, out.output
    scp_file = tmp_path / "scp.json"
    scp_file.write_text(json.dumps({"Version": "2012-10-17", "Statement": [json.loads(out.output)]}))
    full = runner.invoke(cli, ["policy", "render", str(policy_file)])
    assert full.exit_code == 0, full.output
    signer_doc = next(s["policy"] for s in json.loads(full.output)["signer_policies"] if s["signer"] == SIGNER)
    signer_file = tmp_path / "signer.json"
    signer_file.write_text(json.dumps(signer_doc))

    def simulate(user: str, rid: str) -> Result:
        return runner.invoke(cli, [
            "simulate", "--action", "rds-db:connect", "--resource", dbuser_arn(REGION, ACCOUNT, rid, user),
            "--identity-policy", str(signer_file), "--scp", str(scp_file), "--json",
        ])

    ok = simulate("orders_app", world["instance_rid"])
    assert ok.exit_code == 0 and json.loads(ok.output)["decision"] == "allowed"
    no = simulate("intruder", world["instance_rid"])
    assert no.exit_code == 1 and json.loads(no.output)["decision"] == "implicitDeny"


def test_render_only_signer_refuses_when_several_signers(world: dict[str, Any], tmp_path: Path) -> None:
    policy_file = tmp_path / "access.yaml"
    policy_file.write_text(POLICY)
    out = CliRunner().invoke(cli, ["policy", "render", str(policy_file), "--only", "signer"])
    assert out.exit_code == 2
    assert "several" in out.output and "Traceback" not in out.output


def test_render_unknown_database_is_one_line_exit_2(world: dict[str, Any], tmp_path: Path) -> None:
    policy_file = tmp_path / "access.yaml"
    policy_file.write_text(POLICY.replace("instance: orders-prod", "instance: no-such-db"))
    out = CliRunner().invoke(cli, ["policy", "render", str(policy_file)])
    assert out.exit_code == 2
    lines = [line for line in out.output.splitlines() if line]
    assert len(lines) == 1 and "no-such-db" in lines[0] and str(policy_file) in lines[0]


def test_render_bad_policy_file_is_exit_2(tmp_path: Path) -> None:
    policy_file = tmp_path / "access.yaml"
    policy_file.write_text("version: 1\ndatabases: {}\nrules: [}\n")
    out = CliRunner().invoke(cli, ["policy", "render", str(policy_file)])
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_render_refuses_missing_resource_id(world: dict[str, Any]) -> None:
    class NoId:
        def describe_db_instances(self, **_: Any) -> dict[str, Any]:
            return {"DBInstances": [{"DBInstanceArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:orders-prod"}]}

    policy = load_policy_text(POLICY.split("  billing:")[0] + "rules: []\n", source="one.yaml")
    with pytest.raises(IamFetchError, match="no resource id"):
        render_policies(policy, lambda region: NoId())
