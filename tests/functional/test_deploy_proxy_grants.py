"""The generated deployment policies grant what the canary reads for RDS Proxy databases
(leg 2: the proxy's targets, the target's resource id, the proxy role's policies) to the canary
only, judged with rdsvend's IAM evaluator."""
from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.model import PolicyDocument, RequestContext, parse_policy
from chalicelib.policy.loader import load_policy_text
from devtools.deploy.roles import function_policy, load_chalice_config, load_deploy_settings, stage_settings
from tests.support.policies import policy_text, rule
from tests.support.proxies import proxy_database, reports_proxy

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_chalice_config(ROOT)
PRX = "prx-0123456789abcdef0"
ACCESS = policy_text([proxy_database(), reports_proxy()],
                     [rule("all", ["*"], ["*"], ["*"])])


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PolicyDocument]:
    base = tmp_path_factory.mktemp("deploy")
    (base / "access.yaml").write_text(ACCESS)
    text = (ROOT / "policies" / "deploy.yaml").read_text().split("resource_ids:")[0]
    text = text.replace("access_policy: access-dev.yaml", "access_policy: access.yaml")
    (base / "deploy.yaml").write_text(text + f"resource_ids:\n  orders-proxy: {PRX}\n"
                                      "  reports-proxy: prx-fedcba98765432100\n")
    deploy = load_deploy_settings(base / "deploy.yaml", "prod")
    policy = load_policy_text(ACCESS, "access.yaml")
    stage = stage_settings(CONFIG, "prod")
    return {f: parse_policy(function_policy(f, stage, policy, deploy), f) for f in ("canary", "vend", "api_handler")}


def decide(documents: dict[str, PolicyDocument], function: str, action: str, resource: str) -> str:
    return evaluate(RequestContext(action, resource), identity_policies=[documents[function]]).decision


READS = [
    ("rds:DescribeDBProxyTargets", f"arn:aws:rds:us-east-1:111122223333:db-proxy:{PRX}"),
    ("rds:DescribeDBProxyTargets", "arn:aws:rds:us-east-1:111122223333:target-group:prx-tg-abc"),
    ("rds:DescribeDBInstances", "arn:aws:rds:us-east-1:111122223333:db:orders-prod"),
    ("rds:DescribeDBClusters", "arn:aws:rds:us-east-1:111122223333:cluster:reports-aurora"),
    ("iam:GetRolePolicy", "arn:aws:iam::111122223333:role/orders-proxy-role"),
    ("iam:ListAttachedRolePolicies", "arn:aws:iam::111122223333:role/orders-proxy-role"),
]


@pytest.mark.parametrize(("action", "resource"), READS)
def test_the_canary_may_read_leg_two(documents: dict[str, PolicyDocument], action: str, resource: str) -> None:
    assert decide(documents, "canary", action, resource) == "allowed"


@pytest.mark.parametrize("function", ["vend", "api_handler"])
def test_the_vending_functions_may_not(documents: dict[str, PolicyDocument], function: str) -> None:
    for action, resource in READS:
        assert decide(documents, function, action, resource) == "implicitDeny", action
    # they describe the proxy itself, to vend for it
    assert decide(documents, function, "rds:DescribeDBProxies",
                  f"arn:aws:rds:us-east-1:111122223333:db-proxy:{PRX}") == "allowed"


def test_nothing_more_than_reading(documents: dict[str, PolicyDocument]) -> None:
    for action, resource in [("rds:DescribeDBInstances", "arn:aws:rds:us-east-1:111122223333:db:other"),
                             ("rds:DeregisterDBProxyTargets", f"arn:aws:rds:us-east-1:111122223333:db-proxy:{PRX}"),
                             ("iam:PutRolePolicy", "arn:aws:iam::111122223333:role/orders-proxy-role"),
                             ("iam:GetRolePolicy", "arn:aws:iam::999999999999:role/orders-proxy-role")]:
        assert decide(documents, "canary", action, resource) == "implicitDeny", action
