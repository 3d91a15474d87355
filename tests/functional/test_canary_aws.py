"""The canary's AWS adapters against moto: RDS facts, the signer's IAM policies and the SCP chain."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.aws.probe import AwsClients
from chalicelib.canary.checks_iam import check_scp_allows, check_signer_allows
from chalicelib.canary.checks_kerberos import BotoDirectoryRoleFacts, check_directory_role
from chalicelib.canary.checks_rds import (
    BotoRdsFacts,
    check_domain_joined,
    check_found,
    check_iam_auth_enabled,
)
from chalicelib.canary.iam_facts import LiveConnectEvaluator
from chalicelib.canary.model import CheckResult
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database, DbUser, Kind
from devtools.local.postgres import free_port

REGION = "us-east-1"


def _db(identifier: str = "orders-prod", kind: Kind = "instance") -> Database:
    return Database("orders", "postgres", REGION, kind, identifier, {"app": DbUser("app", "iam")})


@pytest.fixture
def aws(aws_env: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


def _instance(session: boto3.session.Session, identifier: str = "orders-prod", iam: bool = True, **extra: Any,
              ) -> dict[str, Any]:
    rds = session.client("rds")
    rds.create_db_instance(DBInstanceIdentifier=identifier, Engine="postgres", DBInstanceClass="db.t4g.micro",
                           MasterUsername="admin", MasterUserPassword="x" * 12, AllocatedStorage=20,
                           EnableIAMDatabaseAuthentication=iam, **extra)
    described: dict[str, Any] = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    return described


def test_rds_facts_for_an_instance_found_stopped_and_iam_disabled(aws: boto3.session.Session) -> None:
    raw = _instance(aws)
    facts = BotoRdsFacts(AwsClients(session=aws))
    resource = facts.describe(_db())
    assert resource is not None
    assert resource.resource_id == raw["DbiResourceId"] and resource.account == "123456789012"
    assert check_found(_db(), resource).status == "pass"
    assert check_iam_auth_enabled(_db(), resource).status == "pass"

    aws.client("rds").stop_db_instance(DBInstanceIdentifier="orders-prod")
    found = check_found(_db(), facts.describe(_db()))
    assert found.status == "fail" and "stopped" in found.message

    aws.client("rds").start_db_instance(DBInstanceIdentifier="orders-prod")
    aws.client("rds").modify_db_instance(DBInstanceIdentifier="orders-prod", EnableIAMDatabaseAuthentication=False,
                                         ApplyImmediately=True)
    assert check_iam_auth_enabled(_db(), facts.describe(_db())).status == "fail"


def test_missing_instance_is_a_fail_and_unreachable_rds_is_an_error(aws: boto3.session.Session) -> None:
    facts = BotoRdsFacts(AwsClients(session=aws))
    assert facts.describe(_db("nope")) is None
    assert check_found(_db("nope"), None).status == "fail"

    port = free_port()  # a port that was free a moment ago: connection refused
    dead = BotoRdsFacts(AwsClients(session=aws, endpoint_url=f"http://127.0.0.1:{port}", timeout_seconds=1))
    with pytest.raises(ProbeError) as caught:
        dead.describe(_db())
    result = check_found(_db(), caught.value)
    assert result.status == "error"
    assert "EndpointConnectionError" in result.message
    assert "testing" not in result.message  # no credential in the cause


def test_directory_role_and_domain_membership(aws: boto3.session.Session) -> None:
    iam = aws.client("iam")
    iam.create_role(RoleName="rds-directory", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "rds.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    _instance(aws, Domain="d-1234567890", DomainIAMRoleName="rds-directory")
    clients = AwsClients(session=aws)
    resource = BotoRdsFacts(clients).describe(_db())
    assert check_domain_joined(_db(), resource).status == "pass"
    role_facts = BotoDirectoryRoleFacts(clients)
    missing_policy = check_directory_role(resource, role_facts.describe("rds-directory"))
    assert missing_policy.status == "fail" and "AmazonRDSDirectoryServiceAccess" in missing_policy.fix
    iam.create_policy(PolicyName="AmazonRDSDirectoryServiceAccess", Path="/service-role/",
                      PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                          {"Effect": "Allow", "Action": "ds:DescribeDirectories", "Resource": "*"}]}))
    iam.attach_role_policy(RoleName="rds-directory",
                           PolicyArn="arn:aws:iam::123456789012:policy/service-role/AmazonRDSDirectoryServiceAccess")
    assert check_directory_role(resource, role_facts.describe("rds-directory")).status == "pass"


# ----------------------------------------------------------------------------- IAM + SCPs

def _signer_policy(resource: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Connect", "Effect": "Allow", "Action": "rds-db:connect", "Resource": resource}]})


@pytest.fixture
def org(aws: boto3.session.Session) -> dict[str, Any]:
    """An organization: root -> OU Services -> member account holding the signer role."""
    orgs = aws.client("organizations")
    orgs.create_organization(FeatureSet="ALL")
    root = orgs.list_roots()["Roots"][0]["Id"]
    orgs.enable_policy_type(RootId=root, PolicyType="SERVICE_CONTROL_POLICY")
    ou = orgs.create_organizational_unit(ParentId=root, Name="Services")["OrganizationalUnit"]["Id"]
    account = orgs.create_account(AccountName="svc", Email="svc@example.com")["CreateAccountStatus"]["AccountId"]
    orgs.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
    creds = aws.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                                          RoleSessionName="seed")["Credentials"]
    member = boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                   aws_session_token=creds["SessionToken"], region_name=REGION)
    iam = member.client("iam")
    iam.create_role(RoleName="signer", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    arn = f"arn:aws:rds-db:{REGION}:{account}:dbuser:db-ABCDEFGHIJKL/app"
    iam.put_role_policy(RoleName="signer", PolicyName="connect", PolicyDocument=_signer_policy(arn))
    return {"orgs": orgs, "root": root, "ou": ou, "account": account, "iam": iam, "arn": arn,
            "principal": f"arn:aws:iam::{account}:role/signer"}


def _evaluate(org: dict[str, Any]) -> tuple[CheckResult, CheckResult]:
    evaluator = LiveConnectEvaluator(iam_client=org["iam"], org_client=org["orgs"])
    facts = evaluator.evaluate(org["principal"], org["arn"], account_id=org["account"])
    kw = {"principal": org["principal"], "dbuser_arn": org["arn"]}
    return check_signer_allows(facts, **kw), check_scp_allows(facts, **kw)


def test_signer_and_scps_allow(org: dict[str, Any]) -> None:
    signer, scp = _evaluate(org)
    assert (signer.status, scp.status) == ("pass", "pass")


@pytest.mark.parametrize("where", ["root", "ou"])
def test_scp_deny_is_named_with_policy_statement_and_level(org: dict[str, Any], where: str) -> None:
    doc = {"Version": "2012-10-17", "Statement": [{"Sid": "NoDbLogins", "Effect": "Deny", "Action": "rds-db:*",
                                                     "Resource": "*"}]}
    policy = org["orgs"].create_policy(Name="DenyRdsDb", Description="x", Type="SERVICE_CONTROL_POLICY",
                                       Content=json.dumps(doc))["Policy"]["PolicySummary"]["Id"]
    org["orgs"].attach_policy(PolicyId=policy, TargetId=org[where])
    signer, scp = _evaluate(org)
    assert signer.status == "pass"
    assert scp.status == "fail"
    assert policy in scp.message and "NoDbLogins" in scp.message
    assert (org["root"] if where == "root" else "OU Services") in scp.message


def test_instance_name_arn_in_the_signer_policy_is_flagged(org: dict[str, Any]) -> None:
    wrong = org["arn"].replace("db-ABCDEFGHIJKL", "orders-prod")
    org["iam"].put_role_policy(RoleName="signer", PolicyName="connect", PolicyDocument=_signer_policy(wrong))
    signer, scp = _evaluate(org)
    assert scp.status == "pass"
    assert signer.status == "fail"
    assert wrong in signer.fix and org["arn"] in signer.fix


def test_unreadable_iam_is_an_error_on_both_checks(org: dict[str, Any]) -> None:
    evaluator = LiveConnectEvaluator(iam_client=org["iam"], org_client=org["orgs"])
    missing = org["principal"].replace("signer", "ghost")
    with pytest.raises(ProbeError) as caught:
        evaluator.evaluate(missing, org["arn"], account_id=org["account"])
    kw = {"principal": missing, "dbuser_arn": org["arn"]}
    assert check_signer_allows(caught.value, **kw).status == "error"
    assert check_scp_allows(caught.value, **kw).status == "error"


def test_no_organization_means_no_scp_applies(aws: boto3.session.Session) -> None:
    iam = aws.client("iam")
    iam.create_role(RoleName="signer", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    arn = f"arn:aws:rds-db:{REGION}:123456789012:dbuser:db-ABCDEFGHIJKL/app"
    iam.put_role_policy(RoleName="signer", PolicyName="connect", PolicyDocument=_signer_policy(arn))
    evaluator = LiveConnectEvaluator(iam_client=iam, org_client=aws.client("organizations"))
    facts = evaluator.evaluate("arn:aws:iam::123456789012:role/signer", arn, account_id="123456789012")
    scp = check_scp_allows(facts, principal="p", dbuser_arn=arn)
    assert scp.status == "pass" and "no SCP" in scp.message
