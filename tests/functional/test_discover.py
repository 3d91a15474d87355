"""``rdsvend discover`` on a moto organization: the management account (the operator's), a
member account readable through rdsvend-reader, and one whose role the operator may not assume.

moto does not evaluate trust policies; the unreadable account is made real with moto's IAM
enforcement instead: the operator's own identity policy allows ``sts:AssumeRole`` on the
reader role of one member account only, and moto refuses the other.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner, Result
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from chalicelib.policy.loader import load_policy_text
from devtools.cli.main import cli

REGION = "us-east-1"
MANAGEMENT = "123456789012"


def _member(session: boto3.session.Session, account: str) -> boto3.session.Session:
    creds = session.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="seed")["Credentials"]
    return boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["SessionToken"], region_name=REGION)


@pytest.fixture
def organization(aws_env: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        orgs = session.client("organizations")
        orgs.create_organization(FeatureSet="ALL")
        data = orgs.create_account(AccountName="data", Email="d@example.com")["CreateAccountStatus"]["AccountId"]
        sealed = orgs.create_account(AccountName="sealed", Email="s@example.com")["CreateAccountStatus"]["AccountId"]
        member = _member(session, data)
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT}:root"}, "Action": "sts:AssumeRole"}]})
        iam = member.client("iam")
        iam.create_role(RoleName="rdsvend-reader", AssumeRolePolicyDocument=trust)
        iam.put_role_policy(RoleName="rdsvend-reader", PolicyName="read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "rds:Describe*", "Resource": "*"}]}))
        rds = member.client("rds")
        ledger = rds.create_db_instance(
            DBInstanceIdentifier="ledger-prod", Engine="postgres", DBInstanceClass="db.t4g.micro",
            MasterUsername="admin", MasterUserPassword="x" * 12, AllocatedStorage=20,
            EnableIAMDatabaseAuthentication=True, PubliclyAccessible=True)["DBInstance"]
        legacy = rds.create_db_instance(
            DBInstanceIdentifier="legacy-erp", Engine="oracle-ee", DBInstanceClass="db.t3.medium",
            MasterUsername="admin", MasterUserPassword="x" * 12, AllocatedStorage=20)["DBInstance"]
        cluster = rds.create_db_cluster(
            DBClusterIdentifier="billing", Engine="aurora-mysql", MasterUsername="admin",
            MasterUserPassword="x" * 12)["DBCluster"]
        ec2 = member.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
        proxy = rds.create_db_proxy(
            DBProxyName="ledger-proxy", EngineFamily="POSTGRESQL", RoleArn=f"arn:aws:iam::{data}:role/proxy",
            VpcSubnetIds=subnets, Auth=[{"AuthScheme": "SECRETS", "IAMAuth": "REQUIRED",
                                          "SecretArn": f"arn:aws:secretsmanager:{REGION}:{data}:secret:p"}])["DBProxy"]
        rds.register_db_proxy_targets(DBProxyName="ledger-proxy", DBInstanceIdentifiers=["ledger-prod"])
        own = session.client("rds").create_db_instance(
            DBInstanceIdentifier="orders-local", Engine="postgres", DBInstanceClass="db.t4g.micro",
            MasterUsername="admin", MasterUserPassword="x" * 12, AllocatedStorage=20,
            EnableIAMDatabaseAuthentication=True)["DBInstance"]
        # the operator: may list the organization, assume the data account's reader role, read RDS here
        admin_iam = session.client("iam")
        admin_iam.create_user(UserName="operator")
        admin_iam.put_user_policy(UserName="operator", PolicyName="discover", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["organizations:ListAccounts", "rds:Describe*",
                                               "sts:GetCallerIdentity"], "Resource": "*"},
                {"Effect": "Allow", "Action": "sts:AssumeRole",
                 "Resource": f"arn:aws:iam::{data}:role/rdsvend-reader"}]}))
        keys = admin_iam.create_access_key(UserName="operator")["AccessKey"]
        yield {"data": data, "sealed": sealed, "keys": keys, "ledger": ledger, "legacy": legacy,
               "cluster": cluster, "own": own, "proxy": proxy}


def run(organization: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", organization["keys"]["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", organization["keys"]["SecretAccessKey"])
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "RDSVEND_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RDSVEND_ORG_ROLE_ARN", raising=False)

    @set_initial_no_auth_action_count(0)
    def enforced() -> Result:
        return CliRunner().invoke(cli, ["discover", *args])

    return enforced()


def test_json_lists_every_readable_account_and_the_one_that_is_not(organization: dict[str, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(organization, monkeypatch, "--format", "json")
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stdout, (result.output, result.exception)
    answer = json.loads(result.stdout)
    by_account = {a["account"]: a for a in answer["accounts"]}
    assert set(by_account) == {MANAGEMENT, organization["data"], organization["sealed"]}
    assert by_account[organization["data"]] == {"account": organization["data"], "status": "ok", "error": None}
    sealed = by_account[organization["sealed"]]
    assert sealed["status"] == "error"
    assert sealed["error"].startswith(
        f"could not assume reader role 'arn:aws:iam::{organization['sealed']}:role/rdsvend-reader' as "
        f"arn:aws:iam::{MANAGEMENT}:user/operator (account {MANAGEMENT}): AccessDenied")
    found = {(d["account"], d["kind"], d["identifier"]): d for d in answer["databases"]}
    ledger = found[(organization["data"], "instance", "ledger-prod")]
    assert ledger == {
        "account": organization["data"], "region": REGION, "kind": "instance", "identifier": "ledger-prod",
        "engine": "postgres", "host": organization["ledger"]["Endpoint"]["Address"],
        "port": organization["ledger"]["Endpoint"]["Port"], "resource_id": organization["ledger"]["DbiResourceId"],
        "iam_auth": True, "flags": ["publicly_accessible"]}
    legacy = found[(organization["data"], "instance", "legacy-erp")]
    assert legacy["flags"] == ["iam_auth_off", "engine_without_iam_auth"]
    billing = found[(organization["data"], "cluster", "billing")]
    assert billing["resource_id"] == organization["cluster"]["DbClusterResourceId"]
    assert billing["engine"] == "aurora-mysql" and "iam_auth_off" in billing["flags"]
    proxy = found[(organization["data"], "proxy", "ledger-proxy")]
    assert proxy["resource_id"] == organization["proxy"]["DBProxyArn"].rsplit(":", 1)[-1]
    assert (proxy["host"], proxy["port"], proxy["iam_auth"], proxy["flags"]) == (
        organization["proxy"]["Endpoint"], 5432, True, [])
    own = found[(MANAGEMENT, "instance", "orders-local")]
    assert own["resource_id"] == organization["own"]["DbiResourceId"]


def test_yaml_is_a_databases_block_that_loads_once_users_are_named(organization: dict[str, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(organization, monkeypatch, "--accounts", organization["data"], "--regions", REGION)
    assert result.exit_code == 0, result.output
    block = yaml.safe_load(result.stdout)
    assert set(block["databases"]) == {"ledger-prod", "billing", "ledger-proxy"}  # oracle: only a comment
    assert "# skipped instance 'legacy-erp'" in result.stdout
    ledger = block["databases"]["ledger-prod"]
    assert ledger == {"engine": "postgres", "region": REGION, "account": organization["data"],
                      "instance": "ledger-prod", "resource_id": organization["ledger"]["DbiResourceId"],
                      "reader_role": f"arn:aws:iam::{organization['data']}:role/rdsvend-reader", "users": {}}
    assert f"# signer_role: arn:aws:iam::{organization['data']}:role/rdsvend-signer" in result.stdout
    assert block["databases"]["billing"]["engine"] == "mysql"
    assert block["databases"]["ledger-proxy"]["proxy"] == "ledger-proxy"
    assert block["databases"]["ledger-proxy"]["engine"] == "postgres"
    # the instance registered behind the proxy (DescribeDBProxyTargets); a secrets proxy
    assert block["databases"]["ledger-proxy"]["target_instance"] == "ledger-prod"
    assert block["databases"]["ledger-proxy"]["target_auth"] == "secrets"
    # filled in, it is a policy the service (in the management account) accepts
    text = result.stdout.replace("users: {}", "users: {app: {auth: iam}}") + (
        "rules:\n  - {id: r, effect: allow, principals: ['*'], databases: ['*'], db_users: [app]}\n")
    loaded = load_policy_text(text, service_account=MANAGEMENT)
    assert loaded.databases["ledger-prod"].account == organization["data"]


def test_table_and_a_role_name_nobody_has(organization: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(organization, monkeypatch, "--format", "table", "--role-name", "no-such-role",
                 "--accounts", f"{organization['data']},{MANAGEMENT}")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ACCOUNT", "REGION", "KIND", "IDENTIFIER", "ENGINE", "ENDPOINT", "RESOURCE_ID",
                                "IAM", "FLAGS"]
    assert any(line.split()[:4] == [MANAGEMENT, REGION, "instance", "orders-local"] for line in lines)
    assert f"account {MANAGEMENT}: ok" in lines
    assert any(line.startswith(f"account {organization['data']}: error: could not assume reader role "
                               f"'arn:aws:iam::{organization['data']}:role/no-such-role'") for line in lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--regions", "mars-1"], "rdsvend: invalid region 'mars-1' in --regions"),
        (["--regions", ","], "rdsvend: --regions names no region"),
        (["--accounts", "12345"], "rdsvend: invalid account '12345' in --accounts"),
        (["--accounts", "12345678901２"], "rdsvend: invalid account '12345678901２' in --accounts"),
        (["--role-name", "a b"], "rdsvend: invalid role name 'a b' in --role-name"),
        (["--role-name", "x" * 5000], "rdsvend: invalid role name '" + "x" * 80 + "' in --role-name"),
        (["--format", "xml"], "Error: Invalid value for '--format': 'xml' is not one of 'yaml', 'json', 'table'."),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["discover", *args])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [message]


def test_accounts_are_listed_through_the_organization_reader_role_when_set(organization: dict[str, Any],
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """(moto, enforcing IAM, reads a same-account role's trust policy but not ``:root`` principals:
    the trust names the operator itself.)"""
    iam = boto3.client("iam", region_name=REGION)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT}:user/operator"},
        "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="rdsvend-org-reader", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="rdsvend-org-reader", PolicyName="org", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "organizations:List*", "Resource": "*"}]}))
    org_role = f"arn:aws:iam::{MANAGEMENT}:role/rdsvend-org-reader"
    # the operator may assume it, and may no longer list the organization itself
    iam.put_user_policy(UserName="operator", PolicyName="discover", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["rds:Describe*", "sts:GetCallerIdentity"], "Resource": "*"},
            {"Effect": "Allow", "Action": "sts:AssumeRole",
             "Resource": [f"arn:aws:iam::{organization['data']}:role/rdsvend-reader", org_role]}]}))
    without = run(organization, monkeypatch, "--format", "json")
    assert without.exit_code == 1 and without.stdout == ""
    (line,) = without.output.strip().splitlines()  # one line, whatever the service's message holds
    assert line.startswith("rdsvend: cannot list the organization's accounts: ")
    assert f"arn:aws:iam::{MANAGEMENT}:user/operator is not authorized to perform: organizations:ListAccounts" in line
    monkeypatch.setenv("RDSVEND_ORG_ROLE_ARN", org_role)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", organization["keys"]["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", organization["keys"]["SecretAccessKey"])

    @set_initial_no_auth_action_count(0)
    def enforced() -> Result:
        return CliRunner().invoke(cli, ["discover", "--format", "json"])

    result = enforced()
    assert result.stdout, (result.output, result.exception)
    answer = json.loads(result.stdout)
    assert {a["account"] for a in answer["accounts"]} == {MANAGEMENT, organization["data"], organization["sealed"]}
    assert result.exit_code == 1  # the sealed account still cannot be read
    # an organization reader role that cannot be assumed: one line naming it and who tried
    monkeypatch.setenv("RDSVEND_ORG_ROLE_ARN", f"arn:aws:iam::{MANAGEMENT}:role/someone-elses")
    refused = enforced()
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.output.strip().splitlines() == [
        "rdsvend: cannot list the organization's accounts: could not assume organization reader role "
        f"'arn:aws:iam::{MANAGEMENT}:role/someone-elses' as arn:aws:iam::{MANAGEMENT}:user/operator "
        f"(account {MANAGEMENT}): AccessDenied"]
