"""IAM for Aurora DSQL: ``policy render``, ``simulate`` and the generated function policies
know dsql:DbConnect / dsql:DbConnectAdmin on ``arn:aws:dsql:REGION:ACCOUNT:cluster/ID``."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chalicelib.aws.arn import DSQL_CLUSTER_ARN, dsql_cluster_arn
from chalicelib.errors import IamFetchError
from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.model import RequestContext, parse_policy
from chalicelib.iam.render import DEFAULT_SIGNER, render_policies
from chalicelib.policy.loader import load_policy_text
from devtools.deploy.roles import function_policy, load_chalice_config, load_deploy_settings, stage_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = load_deploy_settings(ROOT / "policies" / "deploy.yaml", "prod")
STAGE = stage_settings(load_chalice_config(ROOT), "prod")
OWN = "abcdefghijklmnopqrstuvwxyz"
SIGNED = "zyxwvutsrqponmlkjihgfedcba"
OTHER = "444444444444"
POLICY = textwrap.dedent(f"""
    version: 1
    databases:
      ledger:
        engine: dsql
        region: us-east-1
        account: "{DEPLOY.account}"
        cluster: {OWN}
        users:
          admin: {{auth: iam}}
          app_rw: {{auth: iam}}
      audit:
        engine: dsql
        region: eu-west-1
        cluster: {SIGNED}
        signer_role: arn:aws:iam::{OTHER}:role/dsql-signer
        users:
          reader: {{auth: iam}}
    rules:
      - {{id: r, effect: allow, principals: ["*"], databases: ["*"], db_users: ["*"]}}
    """)
OWN_ARN = dsql_cluster_arn("us-east-1", DEPLOY.account, OWN)
SIGNED_ARN = f"arn:aws:dsql:eu-west-1:{OTHER}:cluster/{SIGNED}"


def test_cluster_arn_shape() -> None:
    assert SIGNED_ARN == dsql_cluster_arn("eu-west-1", OTHER, SIGNED)
    assert DSQL_CLUSTER_ARN.fullmatch(SIGNED_ARN)["cluster"] == SIGNED  # type: ignore[index]  # a cluster ARN: the pattern matches
    assert dsql_cluster_arn("cn-north-1", OTHER, SIGNED).startswith("arn:aws-cn:dsql:")


def test_render_grants_each_signer_exactly_its_actions_and_reads_nothing() -> None:
    def no_rds(region: str) -> object:
        raise AssertionError("a DSQL cluster is never described in RDS")

    rendered = render_policies(load_policy_text(POLICY, "t.yaml"), no_rds)
    own = rendered.signer_policies[DEFAULT_SIGNER]["Statement"]
    assert own == [
        {"Sid": "RdsvendDsqlDbConnect", "Effect": "Allow", "Action": "dsql:DbConnect", "Resource": [OWN_ARN]},
        {"Sid": "RdsvendDsqlDbConnectAdmin", "Effect": "Allow", "Action": "dsql:DbConnectAdmin",
         "Resource": [OWN_ARN]},
    ]
    assert rendered.signer_policies[f"arn:aws:iam::{OTHER}:role/dsql-signer"]["Statement"] == [
        {"Sid": "RdsvendDsqlDbConnect", "Effect": "Allow", "Action": "dsql:DbConnect", "Resource": [SIGNED_ARN]}]
    out = rendered.to_dict()
    assert "scp_statement" not in out and out["dsql_cluster_arns"] == sorted([OWN_ARN, SIGNED_ARN])
    assert [s["Action"] for s in out["dsql_scp_statements"]] == ["dsql:DbConnect", "dsql:DbConnectAdmin"]


def test_render_needs_the_account_of_a_cluster() -> None:
    policy = POLICY.replace(f'    account: "{DEPLOY.account}"\n', "")
    with pytest.raises(IamFetchError, match="account of DSQL cluster 'abcdefghijklmnopqrstuvwxyz' is unknown"):
        render_policies(load_policy_text(policy, "t.yaml"), lambda region: None)


@pytest.mark.parametrize("function", ["api_handler", "vend", "canary"])
def test_function_policies_grant_exactly_the_declared_dsql_actions(function: str) -> None:
    document = function_policy(function, STAGE, load_policy_text(POLICY, "t.yaml"), DEPLOY)
    doc = parse_policy(json.dumps(document), "generated")

    def decide(action: str, resource: str) -> str:
        return "allow" if evaluate(RequestContext(action, resource), identity_policies=[doc]).allowed else "deny"

    assert decide("dsql:DbConnect", OWN_ARN) == "allow"
    assert decide("dsql:DbConnectAdmin", OWN_ARN) == "allow"
    assert decide("dsql:DbConnectAdmin", SIGNED_ARN) != "allow"  # its signer role signs for it
    assert decide("dsql:DbConnect", SIGNED_ARN) != "allow"
    assert decide("dsql:DbConnect", dsql_cluster_arn("us-east-1", DEPLOY.account, "a" * 26)) != "allow"
    assert decide("dsql:GetCluster", OWN_ARN) == ("allow" if function == "canary" else "deny")
    assert decide("dsql:DeleteCluster", OWN_ARN) != "allow"
    assert not any(s["Action"] == "rds:DescribeDBClusters" for s in document["Statement"])


def test_rotate_gets_no_dsql() -> None:
    document = function_policy("rotate", STAGE, load_policy_text(POLICY, "t.yaml"), DEPLOY)
    assert "dsql:" not in json.dumps(document)


def test_simulate_knows_dsql_actions(tmp_path: Path) -> None:
    identity = tmp_path / "signer.json"
    identity.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "dsql:DbConnect", "Resource": OWN_ARN}]}))

    def simulate(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "devtools.cli.main", "simulate", "--action", action,
                               "--resource", OWN_ARN, "--identity-policy", str(identity)],
                              capture_output=True, text=True, cwd=ROOT, check=False)

    allowed, admin = simulate("dsql:DbConnect"), simulate("dsql:DbConnectAdmin")
    assert allowed.returncode == 0 and "allow" in allowed.stdout.lower()
    assert admin.returncode == 1 and "Traceback" not in admin.stderr
