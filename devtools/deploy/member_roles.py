"""The roles rdsvend needs in the accounts that hold its databases, as one CloudFormation
template for a service-managed or self-managed StackSet.

Rendered from the access policy. One template serves every account: a ``Mappings`` entry per
account the policy names holds what that account gets, looked up with ``AWS::AccountId``:

- the **signer** role (the ``signer_role`` of the account's databases): ``rds-db:connect`` on
  exactly the declared ``auth: iam`` dbuser ARNs it signs for (the ARNs ``rdsvend policy
  render`` gives), nothing else; only where the policy names a signer role;
- the **reader** role (``reader_role``, else ``defaults.reader_role_name``, else
  ``rdsvend-reader``): RDS ``Describe*`` on the account's databases, read access to the
  account's IAM roles and policies (the canary checks what the signer role is allowed), and
  the ``iam-db-auth-error`` logs of its databases.

Both trust only the service account's roles whose name matches ``TrustedRolePattern``
(default: the stage's function roles, ``rdsvend-<stage>-*``). A stack instance in an account
the policy does not name fails (no mapping entry) rather than creating roles that grant
nothing. The accounts to target are in the template's ``Metadata``.
"""
from __future__ import annotations

import re
from typing import Any

from chalicelib.iam.rdsdb import dbuser_arn
from chalicelib.policy.model import AccessPolicy, Database
from devtools.deploy.settings import DeployConfigError, DeploySettings

__all__ = ["MEMBER_ROLES_FILE", "DEFAULT_READER_ROLE_NAME", "member_accounts", "member_roles_template"]

MEMBER_ROLES_FILE = "member-roles.json"
DEFAULT_READER_ROLE_NAME = "rdsvend-reader"
_ROLE = re.compile(r"arn:(?P<partition>[\w-]+):iam::(?P<account>\d{12}):role"
                   r"(?P<path>/(?:[\w+=,.@-]+/)*)(?P<name>[\w+=,.@-]+)")


def _role_parts(arn: str, field: str) -> tuple[str, str, str]:
    match = _ROLE.fullmatch(arn)
    if match is None:
        raise DeployConfigError(f"'{arn}' is not a role ARN", field=field)
    return match["account"], match["path"], match["name"]


def _account(database: Database, deploy: DeploySettings) -> str:
    """The database's account: declared, else its signer role's, else the service's own."""
    declared = getattr(database, "account", None)
    if declared:
        return str(declared)
    if database.signer_role:
        return _role_parts(database.signer_role, f"databases.{database.name}.signer_role")[0]
    return deploy.account


def _resource_id(database: Database, deploy: DeploySettings) -> str:
    rid = getattr(database, "resource_id", None) or deploy.resource_ids.get(database.name)
    if not rid:
        raise DeployConfigError(f"no resource id for database '{database.name}' (rdsvend policy render shows it)",
                                source=deploy.source, field="resource_ids")
    return str(rid)


def member_accounts(policy: AccessPolicy, deploy: DeploySettings) -> dict[str, dict[str, Any]]:
    """Per account: its signer role (name, path, dbuser ARNs) and its reader role (name, path)."""
    default_reader = getattr(policy, "reader_role_name", None) or DEFAULT_READER_ROLE_NAME
    accounts: dict[str, dict[str, Any]] = {}
    for database in policy.databases.values():
        account = _account(database, deploy)
        entry = accounts.setdefault(account, {"signer": None, "signer_path": "/", "arns": [],
                                              "reader": None, "reader_path": "/"})
        reader = getattr(database, "reader_role", None)
        if reader:
            _, path, name = _role_parts(reader, f"databases.{database.name}.reader_role")
        else:
            path, name = "/", default_reader
        if entry["reader"] not in (None, name):
            raise DeployConfigError(f"account {account} has two reader roles ('{entry['reader']}', '{name}'): "
                                    "the member-roles template makes one per account",
                                    field=f"databases.{database.name}.reader_role")
        entry["reader"], entry["reader_path"] = name, path
        if not database.signer_role:
            continue  # signed by the service's own function roles
        _, path, name = _role_parts(database.signer_role, f"databases.{database.name}.signer_role")
        if entry["signer"] not in (None, name):
            raise DeployConfigError(f"account {account} has two signer roles ('{entry['signer']}', '{name}'): "
                                    "the member-roles template makes one per account",
                                    field=f"databases.{database.name}.signer_role")
        entry["signer"], entry["signer_path"] = name, path
        rid = _resource_id(database, deploy)
        entry["arns"] += [dbuser_arn(database.region, account, rid, user.name, deploy.partition)
                          for user in database.users.values() if user.vendable]
    return accounts


def _trust() -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${ServiceAccountId}:root"}},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
        "Condition": {"ArnLike": {"aws:PrincipalArn": {
            "Fn::Sub": "arn:${AWS::Partition}:iam::${ServiceAccountId}:role/${TrustedRolePattern}"}}},
    }]}


def _lookup(key: str) -> dict[str, Any]:
    return {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::AccountId"}, key]}


def member_roles_template(policy: AccessPolicy, deploy: DeploySettings, stage: str) -> dict[str, Any]:
    accounts = member_accounts(policy, deploy)
    mapping = {
        account: {"SignerRoleName": e["signer"] or "", "SignerRolePath": e["signer_path"],
                  "ConnectArns": sorted(dict.fromkeys(e["arns"])) or ["none"],
                  "ReaderRoleName": e["reader"], "ReaderRolePath": e["reader_path"]}
        for account, e in sorted(accounts.items())
    }
    own_account = "${AWS::AccountId}"
    reader_statements = [
        {"Sid": "DescribeDatabases", "Effect": "Allow",
         "Action": ["rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:DescribeDBProxies"],
         "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:rds:*:{own_account}:{kind}:*"}
                      for kind in ("cluster", "db", "db-proxy")]},
        {"Sid": "ReadRolePolicies", "Effect": "Allow",
         "Action": ["iam:GetPolicy", "iam:GetPolicyVersion", "iam:GetRole", "iam:GetRolePolicy",
                    "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:ListRoleTags"],
         "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:iam::{own_account}:role/*"},
                      {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::{own_account}:policy/*"},
                      {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/*"}]},
        {"Sid": "ReadLoginRefusals", "Effect": "Allow", "Action": ["logs:FilterLogEvents"],
         "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:logs:*:{own_account}:log-group:/aws/rds/{kind}/*"
                                  "/iam-db-auth-error:*"} for kind in ("instance", "cluster")]},
    ]
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"rdsvend {stage}: signer and reader roles in a database account (StackSet)",
        "Metadata": {"rdsvend": {"stage": stage, "accounts": sorted(accounts)}},
        "Parameters": {
            "ServiceAccountId": {"Type": "String", "Default": deploy.account, "AllowedPattern": r"^\d{12}$",
                                 "Description": "the account rdsvend's functions run in"},
            "TrustedRolePattern": {"Type": "String", "Default": f"rdsvend-{stage}-*",
                                   "AllowedPattern": r"^[\w+=,.@*/-]+$",
                                   "Description": "names of the service account's roles that may assume these roles"},
        },
        "Mappings": {"Accounts": mapping},
        "Conditions": {"HasSigner": {"Fn::Not": [{"Fn::Equals": [_lookup("SignerRoleName"), ""]}]}},
        "Resources": {
            "SignerRole": {"Type": "AWS::IAM::Role", "Condition": "HasSigner", "Properties": {
                "RoleName": _lookup("SignerRoleName"), "Path": _lookup("SignerRolePath"),
                "Description": f"rdsvend {stage}: signs RDS IAM auth tokens for the declared db users",
                "MaxSessionDuration": 3600, "AssumeRolePolicyDocument": _trust(),
                "Policies": [{"PolicyName": "rdsvend-connect", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": [{
                        "Sid": "ConnectAsDeclaredDbUsers", "Effect": "Allow", "Action": "rds-db:connect",
                        "Resource": _lookup("ConnectArns")}]}}]}},
            "ReaderRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": _lookup("ReaderRoleName"), "Path": _lookup("ReaderRolePath"),
                "Description": f"rdsvend {stage}: reads RDS, the signer's IAM policies and login refusals",
                "MaxSessionDuration": 3600, "AssumeRolePolicyDocument": _trust(),
                "Policies": [{"PolicyName": "rdsvend-read", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": reader_statements}}]}},
        },
        "Outputs": {
            "SignerRoleArn": {"Condition": "HasSigner", "Value": {"Fn::GetAtt": ["SignerRole", "Arn"]}},
            "ReaderRoleArn": {"Value": {"Fn::GetAtt": ["ReaderRole", "Arn"]}},
        },
    }
