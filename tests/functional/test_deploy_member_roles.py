"""The member-account roles template: rendered from the access policy, one template for every
account (a StackSet), the signer allowed exactly its declared dbuser ARNs, cfn-lint clean."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from chalicelib.policy.loader import load_policy_file, load_policy_text
from chalicelib.policy.model import AccessPolicy
from devtools.deploy.member_roles import member_accounts, member_roles_template
from devtools.deploy.roles import DeployConfigError, DeploySettings, load_deploy_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = load_deploy_settings(ROOT / "policies" / "deploy.yaml", "prod")
SERVICE = DEPLOY.account  # 111122223333
MEMBER = "444455556666"
MULTI = textwrap.dedent(f"""
    version: 1
    databases:
      orders-prod:
        engine: postgres
        region: us-east-1
        instance: orders-prod
        signer_role: arn:aws:iam::{SERVICE}:role/rdsvend-signer-prod
        users:
          orders_app: {{auth: iam}}
          etl_legacy: {{auth: kerberos}}
      billing-aurora:
        engine: postgres
        region: eu-west-1
        cluster: billing
        signer_role: arn:aws:iam::{MEMBER}:role/team/billing-signer
        reader_role: arn:aws:iam::{MEMBER}:role/rdsvend-reader-prod
        users:
          billing_app: {{auth: iam}}
          billing_ro: {{auth: iam}}
          billing_kerb: {{auth: kerberos}}
    rules: []
""")


def _multi() -> AccessPolicy:
    return load_policy_text(MULTI, "multi.yaml", service_account=SERVICE)


def _deploy() -> DeploySettings:
    return replace(DEPLOY, resource_ids={"orders-prod": "db-ABCDEFGHIJKLMNOPQRSTUVWXY1",
                                         "billing-aurora": "cluster-ABCDEFGHIJKLMNOPQRSTUVWXY2"})


def test_each_account_gets_a_signer_for_exactly_its_declared_iam_users() -> None:
    accounts = member_accounts(_multi(), _deploy())
    assert set(accounts) == {SERVICE, MEMBER}
    billing = accounts[MEMBER]
    assert (billing["signer"], billing["signer_path"]) == ("billing-signer", "/team/")
    # In the database's own account and region, with the resource id; the kerberos user is not there.
    assert billing["arns"] == [
        f"arn:aws:rds-db:eu-west-1:{MEMBER}:dbuser:cluster-ABCDEFGHIJKLMNOPQRSTUVWXY2/billing_app",
        f"arn:aws:rds-db:eu-west-1:{MEMBER}:dbuser:cluster-ABCDEFGHIJKLMNOPQRSTUVWXY2/billing_ro"]
    assert accounts[SERVICE]["arns"] == [
        f"arn:aws:rds-db:us-east-1:{SERVICE}:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXY1/orders_app"]
    # A reader role only where a database resolves to one (the service's own account is read directly).
    assert billing["reader"] == "rdsvend-reader-prod" and accounts[SERVICE]["reader"] is None


def test_the_template_looks_up_the_account_it_is_deployed_to() -> None:
    template = member_roles_template(_multi(), _deploy(), "prod")
    assert template["Metadata"]["rdsvend"]["accounts"] == sorted([SERVICE, MEMBER])
    entry = template["Mappings"]["Accounts"][MEMBER]
    assert entry["SignerRoleName"] == "billing-signer" and len(entry["ConnectArns"]) == 2
    signer = template["Resources"]["SignerRole"]["Properties"]
    assert signer["RoleName"] == {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::AccountId"}, "SignerRoleName"]}
    (statement,) = signer["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "rds-db:connect"  # the signer may do nothing else
    assert statement["Resource"] == {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::AccountId"}, "ConnectArns"]}
    for role in ("SignerRole", "ReaderRole"):
        (trust,) = template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${ServiceAccountId}:root"}}
        # Exactly the prod functions that assume member roles: never the rotate function, never dev.
        assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": [
            {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{ServiceAccountId}}:role/rdsvend-prod-{f}"}
            for f in ("api_handler", "vend", "canary")]}}
    assert template["Parameters"] == {"ServiceAccountId": {
        "Type": "String", "Default": SERVICE, "AllowedPattern": r"^\d{12}$",
        "Description": "the account rdsvend's prod functions run in"}}
    reader = json.dumps(template["Resources"]["ReaderRole"]["Properties"]["Policies"])
    assert "rds:DescribeDBInstances" in reader and "iam:GetRolePolicy" in reader and "rds-db" not in reader
    assert "logs:FilterLogEvents" in reader


def test_an_account_without_a_signer_role_or_reader_gets_no_role_of_that_kind() -> None:
    policy = load_policy_file(ROOT / "policies" / "access.yaml", service_account=SERVICE)  # billing: self-signed
    template = member_roles_template(policy, DEPLOY, "prod")
    assert template["Conditions"]["HasSigner"] == {"Fn::Not": [{"Fn::Equals": [
        {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::AccountId"}, "SignerRoleName"]}, ""]}]}
    assert template["Resources"]["SignerRole"]["Condition"] == "HasSigner"
    assert template["Resources"]["ReaderRole"]["Condition"] == "HasReader"
    entry = template["Mappings"]["Accounts"][SERVICE]
    assert (entry["SignerRoleName"], entry["ReaderRoleName"]) == ("rdsvend-signer-prod", "")
    assert all("/orders_" in arn for arn in entry["ConnectArns"])  # orders-prod's iam users only
    assert {arn.rsplit("/", 1)[1] for arn in entry["ConnectArns"]} == {"orders_app", "orders_owner"}


def test_two_signer_roles_in_one_account_are_refused_naming_the_account() -> None:
    text = MULTI.replace(f"arn:aws:iam::{MEMBER}:role/team/billing-signer", f"arn:aws:iam::{SERVICE}:role/other")
    text = text.replace(f"arn:aws:iam::{MEMBER}:role/rdsvend-reader-prod", f"arn:aws:iam::{SERVICE}:role/reader")
    with pytest.raises(DeployConfigError) as raised:
        member_accounts(load_policy_text(text, "two.yaml"), _deploy())
    assert f"account {SERVICE} has two signer roles ('rdsvend-signer-prod', 'other')" in str(raised.value)


def test_a_database_without_a_resource_id_is_refused_naming_it() -> None:
    with pytest.raises(DeployConfigError) as raised:
        member_accounts(_multi(), replace(DEPLOY, resource_ids={}))
    assert "no resource id for database 'orders-prod'" in str(raised.value)


def test_cfn_lint_accepts_the_multi_account_template(tmp_path: Path) -> None:
    path = tmp_path / "member-roles.json"
    path.write_text(json.dumps(member_roles_template(_multi(), _deploy(), "prod"), indent=2))
    done = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
