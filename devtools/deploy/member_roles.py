"""The roles rdsvend needs in the accounts that hold its databases, as one CloudFormation
template for a service-managed or self-managed StackSet.

Rendered from the access policy. One template serves every account: a ``Mappings`` entry per
account the policy names holds what that account gets, looked up with ``AWS::AccountId``:

- the **signer** role (the ``signer_role`` of the account's databases): ``rds-db:connect`` on
  exactly the declared ``auth: iam`` dbuser ARNs it signs for (the ARNs ``rdsvend policy
  render`` gives), nothing else; only where the policy names a signer role;
- the **reader** role (``reader_role``, else ``defaults.reader_role_name`` for a database in
  another account than the stage's): RDS ``Describe*`` on the account's databases, read access
  to the account's IAM roles and policies (the canary checks what the signer role is allowed),
  and the ``iam-db-auth-error`` logs of its databases; only where a database resolves to one.

These are exactly the roles the stage's functions may assume (:mod:`devtools.deploy.documents`),
and their names are the stage's own (``make package`` refuses two stages naming one role). Both
trust exactly the stage's function roles that assume them (``rdsvend-<stage>-vend``,
``rdsvend-<stage>`` and ``rdsvend-<stage>-canary`` in ``ServiceAccountId``), by ARN. A stack
instance in an account the policy does not name fails (no mapping entry) rather than creating
roles that grant nothing. The accounts to target are in the template's ``Metadata``.
"""
from __future__ import annotations

import re
from typing import Any

from chalicelib.iam.rdsdb import dbuser_arn
from chalicelib.policy.model import AccessPolicy, Database
from devtools.deploy.documents import SIGNING
from devtools.deploy.settings import FUNCTIONS, DeployConfigError, DeploySettings, role_name

__all__ = ["MEMBER_ROLES_FILE", "member_accounts", "member_role_arns", "member_roles_template", "trusted_functions"]

MEMBER_ROLES_FILE = "member-roles.json"
_ROLE = re.compile(r"arn:(?P<partition>[\w-]+):iam::(?P<account>\d{12}):role"
                   r"(?P<path>/(?:[\w+=,.@-]+/)*)(?P<name>[\w+=,.@-]+)")


def _role_parts(arn: str, field: str) -> tuple[str, str, str]:
    match = _ROLE.fullmatch(arn)
    if match is None:
        raise DeployConfigError(f"'{arn}' is not a role ARN", field=field)
    return match["account"], match["path"], match["name"]


def _account(database: Database, deploy: DeploySettings) -> str:
    """The database's account: declared, else its signer role's, else the service's own."""
    if database.account:
        return database.account
    if database.signer_role:
        return _role_parts(database.signer_role, f"databases.{database.name}.signer_role")[0]
    return deploy.account


def _resource_id(database: Database, deploy: DeploySettings) -> str:
    rid = database.resource_id or deploy.resource_ids.get(database.name)
    if not rid:
        raise DeployConfigError(f"no resource id for database '{database.name}' (rdsvend policy render shows it)",
                                source=deploy.source, field="resource_ids")
    return str(rid)


def _one_role(entry: dict[str, Any], kind: str, account: str, arn: str, field: str) -> None:
    _, path, name = _role_parts(arn, field)
    if entry[kind] not in (None, name):
        raise DeployConfigError(f"account {account} has two {kind} roles ('{entry[kind]}', '{name}'): "
                                "the member-roles template makes one per account", field=field)
    entry[kind], entry[f"{kind}_path"] = name, path


def member_accounts(policy: AccessPolicy, deploy: DeploySettings) -> dict[str, dict[str, Any]]:
    """Per account: its signer role (name, path, dbuser ARNs) and its reader role (name, path),
    each only where the stage's databases resolve to one (what the functions may assume)."""
    accounts: dict[str, dict[str, Any]] = {}
    for database in policy.databases.values():
        if database.is_dsql:
            continue  # an Aurora DSQL cluster's signer role is not made by this template yet (docs/deploy.md)
        reader = database.reader_role_for(deploy.account)
        if not reader and not database.signer_role:
            continue  # read and signed with the functions' own credentials
        account = _account(database, deploy)
        entry = accounts.setdefault(account, {"signer": None, "signer_path": "/", "arns": [],
                                              "reader": None, "reader_path": "/"})
        if reader:
            _one_role(entry, "reader", account, reader, f"databases.{database.name}.reader_role")
        if not database.signer_role:
            continue  # signed by the service's own function roles
        _one_role(entry, "signer", account, database.signer_role, f"databases.{database.name}.signer_role")
        rid = _resource_id(database, deploy)
        entry["arns"] += [dbuser_arn(database.region, account, rid, user.name, deploy.partition)
                          for user in database.users.values() if user.vendable]
    return accounts


def member_role_arns(policy: AccessPolicy, deploy: DeploySettings) -> list[str]:
    """Every role the member-roles template of this stage creates, as ARNs."""
    arns = []
    for account, entry in member_accounts(policy, deploy).items():
        for kind in ("signer", "reader"):
            if entry[kind]:
                arns.append(f"arn:{deploy.partition}:iam::{account}:role{entry[f'{kind}_path']}{entry[kind]}")
    return sorted(arns)


def trusted_functions(stage: str) -> list[str]:
    """The role names of ``stage``'s functions that assume member roles (never the rotate function)."""
    return [role_name(stage, f) for f in FUNCTIONS if f in SIGNING]


def _trust(stage: str) -> dict[str, Any]:
    trusted = [{"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{ServiceAccountId}}:role/{name}"}
               for name in trusted_functions(stage)]
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${ServiceAccountId}:root"}},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
        # Exactly this stage's function roles (by ARN, so they need not exist yet).
        "Condition": {"ArnEquals": {"aws:PrincipalArn": trusted}},
    }]}


def _lookup(key: str) -> dict[str, Any]:
    return {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::AccountId"}, key]}


def member_roles_template(policy: AccessPolicy, deploy: DeploySettings, stage: str) -> dict[str, Any]:
    accounts = member_accounts(policy, deploy)
    mapping = {
        account: {"SignerRoleName": e["signer"] or "", "SignerRolePath": e["signer_path"],
                  "ConnectArns": sorted(dict.fromkeys(e["arns"])) or ["none"],
                  "ReaderRoleName": e["reader"] or "", "ReaderRolePath": e["reader_path"]}
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
                                 "Description": f"the account rdsvend's {stage} functions run in"},
        },
        "Mappings": {"Accounts": mapping},
        "Conditions": {"HasSigner": {"Fn::Not": [{"Fn::Equals": [_lookup("SignerRoleName"), ""]}]},
                       "HasReader": {"Fn::Not": [{"Fn::Equals": [_lookup("ReaderRoleName"), ""]}]}},
        "Resources": {
            "SignerRole": {"Type": "AWS::IAM::Role", "Condition": "HasSigner", "Properties": {
                "RoleName": _lookup("SignerRoleName"), "Path": _lookup("SignerRolePath"),
                "Description": f"rdsvend {stage}: signs RDS IAM auth tokens for the declared db users",
                "MaxSessionDuration": 3600, "AssumeRolePolicyDocument": _trust(stage),
                "Policies": [{"PolicyName": "rdsvend-connect", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": [{
                        "Sid": "ConnectAsDeclaredDbUsers", "Effect": "Allow", "Action": "rds-db:connect",
                        "Resource": _lookup("ConnectArns")}]}}]}},
            "ReaderRole": {"Type": "AWS::IAM::Role", "Condition": "HasReader", "Properties": {
                "RoleName": _lookup("ReaderRoleName"), "Path": _lookup("ReaderRolePath"),
                "Description": f"rdsvend {stage}: reads RDS, the signer's IAM policies and login refusals",
                "MaxSessionDuration": 3600, "AssumeRolePolicyDocument": _trust(stage),
                "Policies": [{"PolicyName": "rdsvend-read", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": reader_statements}}]}},
        },
        "Outputs": {
            "SignerRoleArn": {"Condition": "HasSigner", "Value": {"Fn::GetAtt": ["SignerRole", "Arn"]}},
            "ReaderRoleArn": {"Condition": "HasReader", "Value": {"Fn::GetAtt": ["ReaderRole", "Arn"]}},
        },
    }
