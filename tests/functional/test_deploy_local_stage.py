"""The ``local`` stage, built by the packaging code and deployed through the AWS API (moto) as a
user deploys: the service stack's roles carry exactly the generated documents, the functions are
registered in Lambda with those roles, and the member-roles template lands in every member
account it lists, never in the management account."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.deploy.local_stage import (
    LOCAL,
    LocalDeployment,
    LocalStage,
    deploy_local_stage,
    local_stage,
    render_for_account,
)
from devtools.deploy.member_roles import member_roles_template
from tests.support.local_world import local_access_text

SERVICE, DATA, WORKLOADS, MANAGEMENT = "222222222222", "444444444444", "333333333333", "111111111111"
RESOURCE_IDS = {"orders-local": "db-AAAAAAAAAAAAAAAAAAAAAAAAAA", "billing-local": "db-BBBBBBBBBBBBBBBBBBBBBBBBBB",
                "shop-local": "db-CCCCCCCCCCCCCCCCCCCCCCCCCC",
                "orders-proxy": "prx-0aaaaaaaaaaaaaaaa", "shop-proxy": "prx-0bbbbbbbbbbbbbbbb"}  # the local RDS Proxies


def _client_for(service: str, account: str) -> Any:
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")

    def in_account(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    client.meta.events.register("before-send.*.*", in_account)
    return client


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[LocalStage, LocalDeployment]]:
    stage = local_stage(local_access_text(), account=SERVICE,
                        region="us-east-1", org_id="o-rdsvend001", resource_ids=RESOURCE_IDS)
    with mock_aws():
        yield stage, deploy_local_stage(stage, _client_for, management_account=MANAGEMENT)


def test_get_function_answers_with_the_role_whose_policies_are_the_generated_documents(
    deployed: tuple[LocalStage, LocalDeployment],
) -> None:
    stage, deployment = deployed
    documents = stage.documents()
    lambda_, iam = _client_for("lambda", SERVICE), _client_for("iam", SERVICE)
    for function, name in stage.plan.functions.items():
        role_arn = lambda_.get_function(FunctionName=name)["Configuration"]["Role"]
        assert role_arn == deployment.roles[function] == f"arn:aws:iam::{SERVICE}:role/rdsvend-local-{function}"
        role = role_arn.rsplit("/", 1)[1]
        (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
        assert iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"] == documents[function]
    vend = documents["vend"]
    assumed = {r for s in vend["Statement"] if "sts:AssumeRole" in json.dumps(s["Action"]) for r in s["Resource"]}
    # exactly the local policy's signers (the DSQL cluster's own among them) and the reader of
    # the databases in the data account
    assert assumed == {f"arn:aws:iam::{SERVICE}:role/rdsvend-signer", f"arn:aws:iam::{DATA}:role/rdsvend-signer",
                       f"arn:aws:iam::{SERVICE}:role/rdsvend-ledger-signer", f"arn:aws:iam::{DATA}:role/rdsvend-reader"}


def test_the_stack_resources_carry_the_local_stage(deployed: tuple[LocalStage, LocalDeployment]) -> None:
    stage, deployment = deployed
    assert deployment.tables == ("rdsvend-local-canary-state", "rdsvend-local-rate-limit", "rdsvend-local-grants")
    assert set(_client_for("dynamodb", SERVICE).list_tables()["TableNames"]) == set(deployment.tables)
    assert deployment.topic_arn == f"arn:aws:sns:us-east-1:{SERVICE}:rdsvend-local-alerts"
    parameter = _client_for("ssm", SERVICE).get_parameter(Name="/rdsvend/local/access-policy")["Parameter"]
    assert parameter["Value"] == stage.policy_text
    env = _client_for("lambda", SERVICE).get_function(FunctionName="rdsvend-local-vend")["Configuration"][
        "Environment"]["Variables"]
    assert env["RDSVEND_SERVER_ID"] == f"rdsvend-{LOCAL}.{SERVICE}"
    # grant requests go to the alert topic; the grants table carries the store's indexes
    assert env["RDSVEND_ALERT_TOPIC"] == deployment.topic_arn
    grants = _client_for("dynamodb", SERVICE).describe_table(TableName="rdsvend-local-grants")["Table"]
    assert {i["IndexName"] for i in grants["GlobalSecondaryIndexes"]} == {"by-requester", "by-state", "by-subject"}


def test_member_roles_land_in_every_member_account_the_template_lists_never_the_management_account(
    deployed: tuple[LocalStage, LocalDeployment],
) -> None:
    stage, deployment = deployed
    assert set(deployment.member_roles) == {SERVICE, DATA}
    assert _client_for("iam", MANAGEMENT).list_roles()["Roles"] == []
    assert _client_for("iam", WORKLOADS).list_roles()["Roles"] == []  # no database there
    roles = {r["RoleName"]: r for r in _client_for("iam", DATA).list_roles()["Roles"]}
    assert set(roles) == {"rdsvend-signer", "rdsvend-reader"}
    (trust,) = roles["rdsvend-signer"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": [
        f"arn:aws:iam::{SERVICE}:role/rdsvend-local-{f}" for f in ("api_handler", "vend", "canary")]}}
    iam = _client_for("iam", DATA)
    (statement,) = iam.get_role_policy(RoleName="rdsvend-signer", PolicyName="rdsvend-connect")[
        "PolicyDocument"]["Statement"]
    assert statement["Resource"] == [f"arn:aws:rds-db:us-east-1:{DATA}:dbuser:{RESOURCE_IDS['billing-local']}/billing_app"]


def test_the_template_refuses_an_account_it_does_not_map(deployed: tuple[LocalStage, LocalDeployment]) -> None:
    stage, _deployment = deployed
    template = member_roles_template(stage.policy, stage.deploy, LOCAL)
    with pytest.raises(ValueError, match=f"no entry for account {WORKLOADS}"):
        render_for_account(template, WORKLOADS)
