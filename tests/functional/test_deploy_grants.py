"""The grants table in the deployment: created by both templates from the store's one
definition (indexes, TTL), and granted to exactly the functions that use it, with exactly the
actions the store calls, on that table and its indexes only."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.grants.store import TABLE_DEFINITION, TTL_ATTRIBUTE
from chalicelib.policy.loader import load_policy_file
from chalicelib.policy.model import AccessPolicy
from devtools.deploy.documents import function_policy
from devtools.deploy.sam import merge_template
from devtools.deploy.settings import (
    DeployConfigError,
    DeploySettings,
    load_chalice_config,
    load_deploy_settings,
    stage_settings,
)
from devtools.deploy.stack import stack_plan
from devtools.deploy.terraform import terraform_stack

ROOT = Path(__file__).resolve().parents[2]
TABLE_ARN = "arn:aws:dynamodb:us-east-1:111122223333:table/rdsvend-prod-grants"


#: the prod stage's deploy settings, the Chalice config and the access policy
Inputs = tuple[DeploySettings, dict[str, Any], AccessPolicy]


@pytest.fixture(scope="module")
def inputs() -> Inputs:
    deploy = load_deploy_settings(ROOT / "policies" / "deploy.yaml", "prod")
    config = load_chalice_config(ROOT)
    return deploy, config, load_policy_file(deploy.access_policy)


def _grant_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if any(TABLE_ARN in r for r in (
        s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]))]


def test_only_the_actions_used_on_that_table(inputs: Inputs) -> None:
    deploy, config, policy = inputs
    stage = stage_settings(config, "prod")
    assert stage.grants_table == "rdsvend-prod-grants"
    for function in ("api_handler", "vend"):
        document = function_policy(function, stage, policy, deploy)
        (statement,) = _grant_statements(document)
        assert statement["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
                                       "dynamodb:UpdateItem"]
        assert statement["Resource"] == [TABLE_ARN, TABLE_ARN + "/index/*"]
        publish = [s for s in document["Statement"] if s["Sid"] == "PublishGrantRequests"]
        assert publish == [{"Sid": "PublishGrantRequests", "Effect": "Allow", "Action": "sns:Publish",
                            "Resource": "arn:aws:sns:us-east-1:111122223333:rdsvend-prod-alerts"}]
    (canary,) = _grant_statements(function_policy("canary", stage, policy, deploy))
    assert canary["Action"] == ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"]
    assert _grant_statements(function_policy("rotate", stage, policy, deploy)) == []


def test_the_generated_policy_files_are_current(inputs: Inputs) -> None:
    deploy, config, policy = inputs
    for function in ("api_handler", "vend", "canary"):
        written = json.loads((ROOT / "policies" / f"iam-prod-{function}.json").read_text())
        assert written == function_policy(function, stage_settings(config, "prod"), policy, deploy)


def test_both_templates_create_the_table_with_its_indexes_and_ttl(inputs: Inputs) -> None:
    deploy, config, _policy = inputs
    plan = stack_plan(config, "prod", deploy)
    text = (ROOT / "policies" / "access.yaml").read_text()
    sam = merge_template(plan, text)["Resources"]["GrantsTable"]["Properties"]
    assert sam["TableName"] == "rdsvend-prod-grants"
    assert sam["GlobalSecondaryIndexes"] == TABLE_DEFINITION["GlobalSecondaryIndexes"]
    assert sam["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    tf = terraform_stack(plan, text, deploy)["resource"]["aws_dynamodb_table"]["grants"]
    assert tf["name"] == "rdsvend-prod-grants" and tf["hash_key"] == "id"
    assert {i["name"]: (i["hash_key"], i.get("range_key")) for i in tf["global_secondary_index"]} == {
        "by-requester": ("requester", "created_at"), "by-state": ("state", "created_at"),
        "by-subject": ("subject", "requester")}
    assert tf["ttl"] == {"attribute_name": TTL_ATTRIBUTE, "enabled": True}


def test_functions_disagreeing_on_the_table_is_a_config_error(inputs: Inputs) -> None:
    _deploy, config, _policy = inputs
    broken = copy.deepcopy(config)
    broken["stages"]["prod"]["lambda_functions"]["canary"]["environment_variables"]["RDSVEND_GRANTS_TABLE"] = "other"
    with pytest.raises(DeployConfigError, match="different RDSVEND_GRANTS_TABLE"):
        stage_settings(broken, "prod")
