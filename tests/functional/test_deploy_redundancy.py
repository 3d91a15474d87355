"""No generated statement repeats what another grants (devtools.deploy.documents.without_redundancy):
taking any one statement out of a role takes a permission away, which is what the local
least-privilege proof then shows with the work itself."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.iam.evaluator import scan
from chalicelib.iam.model import RequestContext, parse_policy
from chalicelib.policy.loader import load_policy_file
from devtools.deploy.documents import function_policy, without_redundancy
from devtools.deploy.local_stage import local_stage
from devtools.deploy.settings import FUNCTIONS, load_chalice_config, load_deploy_settings, stage_settings
from tests.support.local_world import local_access_text

ROOT = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::111122223333:role"


def _allow(sid: str, actions: str | list[str], resources: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def test_an_equal_statement_later_in_the_document_goes() -> None:
    first = _allow("Describe", "rds:DescribeDBInstances", [f"{ROLE[:-9]}:db:a"])
    assert without_redundancy([first, {**first, "Sid": "DescribeAgain"}]) == [first]


def test_a_narrow_grant_inside_a_broad_one_goes_action_by_action() -> None:
    narrow = _allow("ReadSigner", ["iam:GetRole", "iam:ListRoleTags"], [f"{ROLE}/signer", f"{ROLE}/app-*"])
    broad = _allow("ReadAny", ["iam:GetRole", "iam:ListAttachedRolePolicies"], f"{ROLE}/*")
    assert without_redundancy([narrow, broad]) == [
        _allow("ReadSigner", ["iam:ListRoleTags"], [f"{ROLE}/signer", f"{ROLE}/app-*"]), broad]


def test_a_grant_covered_on_only_some_resources_stays() -> None:
    some = _allow("Some", "sns:Publish", ["arn:aws:sns:us-east-1:111122223333:a", "arn:aws:sns:us-east-1:111122223333:b"])
    other = _allow("Other", "sns:Publish", "arn:aws:sns:us-east-1:111122223333:a")
    assert without_redundancy([some, other]) == [some]  # "Other" is inside "Some": it goes, not "Some"


def test_wildcards_are_compared_soundly_and_conditions_are_left_alone() -> None:
    logs = _allow("Logs", "logs:FilterLogEvents", "arn:aws:logs:*:111122223333:log-group:/aws/rds/*/x:*")
    question = _allow("Question", "logs:FilterLogEvents", "arn:aws:logs:*:111122223333:log-group:/aws/rds/?/x:*")
    assert without_redundancy([logs, question]) == [logs, question]  # neither pattern is the other's prefix
    conditioned = _allow("Conditioned", "s3:GetObject", "*", Condition={"Bool": {"aws:SecureTransport": "true"}})
    assert without_redundancy([conditioned, _allow("Any", "s3:GetObject", "*")]) == [
        conditioned, _allow("Any", "s3:GetObject", "*")]


def _documents() -> Iterator[tuple[str, dict[str, Any]]]:
    config = load_chalice_config(ROOT)
    for name in ("dev", "prod"):
        deploy = load_deploy_settings(ROOT / "policies" / "deploy.yaml", name)
        policy = load_policy_file(deploy.access_policy)
        for function in FUNCTIONS:
            yield f"{name}-{function}", function_policy(function, stage_settings(config, name), policy, deploy)
    ids = {"orders-local": "db-AAAAAAAAAAAAAAAAAAAAAAAAAA", "billing-local": "db-BBBBBBBBBBBBBBBBBBBBBBBBBB",
           "shop-local": "db-CCCCCCCCCCCCCCCCCCCCCCCCCC", "orders-proxy": "prx-0aaaaaaaaaaaaaaaa",
           "shop-proxy": "prx-0bbbbbbbbbbbbbbbb"}
    stage = local_stage(local_access_text(), account="222222222222",
                        region="us-east-1", org_id="o-rdsvend001", resource_ids=ids,
                        org_role="arn:aws:iam::111111111111:role/rdsvend-org-reader")
    for function, document in stage.documents().items():
        yield f"local-{function}", document


@pytest.mark.parametrize(("name", "document"), list(_documents()), ids=lambda value: value if isinstance(value, str)
                         else "")
def test_every_generated_statement_grants_something_the_others_do_not(name: str, document: dict[str, Any]) -> None:
    statements = document["Statement"]
    for index, statement in enumerate(statements):
        rest = parse_policy({**document, "Statement": statements[:index] + statements[index + 1:]}, name)
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        # a wildcard resource stands for a name it covers
        lost = [(a, r) for a in actions for r in resources
                if scan([rest], RequestContext(a, r.replace("*", "x").replace("?", "x"), {}))[1] is None]
        assert lost, f"{name}: statement {statement['Sid']} grants nothing the others do not"
