"""The roles rdsvend needs in the accounts that hold its databases, as one CloudFormation
template for a service-managed or self-managed StackSet.

Rendered from the access policy. One template serves every account: a ``Mappings`` entry per
account the policy names holds what that account gets, looked up with ``AWS::AccountId``:

- the **signer** role (the ``signer_role`` of the account's databases): ``rds-db:connect`` on
  exactly the declared ``auth: iam`` dbuser ARNs it signs for (the ARNs ``rdsvend policy
  render`` gives), nothing else; only where the policy names a signer role;
- the **reader** role (``reader_role``, else ``defaults.reader_role_name`` for a database in
  another account than the stage's): RDS ``DescribeDB{Instances,Clusters,Proxies,ProxyTargets}``
  and Aurora DSQL ``ListClusters``/``GetCluster`` in the account (on ``*``: ``rdsvend discover``
  lists them), read access to the account's IAM roles and policies (the canary checks what the
  signer role is allowed), and the ``iam-db-auth-error`` logs of its databases; only where a
  database resolves to one.

- the **Aurora DSQL signer** role (the ``signer_role`` of the account's DSQL clusters):
  ``dsql:DbConnect`` on the clusters whose custom roles it signs for and ``dsql:DbConnectAdmin``
  on those whose ``admin`` it signs for, nothing else; only where the policy names one. It is
  a role of its own: an account's RDS signer and DSQL signer have different names.

These are exactly the roles the stage's functions may assume (:mod:`devtools.deploy.documents`),
and their names are the stage's own (``make package`` refuses two stages naming one role). All
trust exactly the stage's function roles that assume them (``rdsvend-<stage>-vend``,
``rdsvend-<stage>`` and ``rdsvend-<stage>-canary`` in ``ServiceAccountId``), by ARN, and the
people the ``OperatorPrincipalArns`` parameter names (none by default: those who run
``rdsvend canary``, ``doctor`` or ``discover`` themselves). A stack instance in an account the
policy does not name fails (no mapping entry) rather than creating roles that grant nothing.
The accounts to target are in the template's ``Metadata``.
"""
from __future__ import annotations

import re
from typing import Any

from chalicelib.aws.arn import dsql_cluster_arn
from chalicelib.iam.rdsdb import dbuser_arn
from chalicelib.policy.model import DSQL_ADMIN_ACTION, AccessPolicy, Database
from devtools.deploy.documents import SIGNING
from devtools.deploy.settings import FUNCTIONS, DeployConfigError, DeploySettings, role_name

__all__ = ["MEMBER_ROLES_FILE", "OPERATORS_PARAMETER", "SIGNER_POLICY", "READER_POLICY", "DSQL_SIGNER_POLICY",
           "member_accounts", "member_role_arns", "member_roles_template", "trusted_functions"]

MEMBER_ROLES_FILE = "member-roles.json"
#: The template's parameter naming the people (IAM users or roles, by ARN) who may assume its
#: roles besides the stage's functions: operators running ``rdsvend canary``, ``doctor``, ``discover``.
OPERATORS_PARAMETER = "OperatorPrincipalArns"
#: The inline policy of each role the template makes.
SIGNER_POLICY, READER_POLICY, DSQL_SIGNER_POLICY = "rdsvend-connect", "rdsvend-read", "rdsvend-dsql-connect"
#: The kinds of role one account gets, each at most once.
_KINDS = ("signer", "reader", "dsql_signer")
_KIND_WORDS = {"signer": "signer", "reader": "reader", "dsql_signer": "Aurora DSQL signer"}
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
        raise DeployConfigError(f"account {account} has two {_KIND_WORDS[kind]} roles ('{entry[kind]}', '{name}'): "
                                "the member-roles template makes one per account", field=field)
    for other in _KINDS:
        if other != kind and entry[other] == name:
            raise DeployConfigError(f"role '{name}' of account {account} would be both its {_KIND_WORDS[other]} "
                                    f"and its {_KIND_WORDS[kind]} role: give each its own name", field=field)
    entry[kind], entry[f"{kind}_path"] = name, path


def _new_entry() -> dict[str, Any]:
    return {"signer": None, "signer_path": "/", "arns": [], "reader": None, "reader_path": "/",
            "dsql_signer": None, "dsql_signer_path": "/", "dsql_connect": [], "dsql_admin": []}


def _dsql_signer(entry: dict[str, Any], database: Database, account: str, deploy: DeploySettings) -> None:
    """The cluster's signer role, and which of DbConnect / DbConnectAdmin it needs on the cluster."""
    _one_role(entry, "dsql_signer", account, str(database.signer_role), f"databases.{database.name}.signer_role")
    arn = dsql_cluster_arn(database.region, account, database.identifier, deploy.partition)
    for action in sorted({database.dsql_action(user.name) for user in database.users.values() if user.vendable}):
        entry["dsql_admin" if action == DSQL_ADMIN_ACTION else "dsql_connect"].append(arn)


def member_accounts(policy: AccessPolicy, deploy: DeploySettings) -> dict[str, dict[str, Any]]:
    """Per account: its signer role (name, path, dbuser ARNs), its reader role (name, path) and its
    Aurora DSQL signer role (name, path, cluster ARNs per action), each only where the stage's
    databases resolve to one (what the functions may assume)."""
    accounts: dict[str, dict[str, Any]] = {}
    for database in policy.databases.values():
        reader = database.reader_role_for(deploy.account)
        if not reader and not database.signer_role:
            continue  # read and signed with the functions' own credentials
        account = _account(database, deploy)
        entry = accounts.setdefault(account, _new_entry())
        if reader:
            _one_role(entry, "reader", account, reader, f"databases.{database.name}.reader_role")
        if not database.signer_role:
            continue  # signed by the service's own function roles
        if database.is_dsql:
            _dsql_signer(entry, database, account, deploy)
            continue
        _one_role(entry, "signer", account, database.signer_role, f"databases.{database.name}.signer_role")
        rid = _resource_id(database, deploy)
        entry["arns"] += [dbuser_arn(database.region, account, rid, user.name, deploy.partition)
                          for user in database.users.values() if user.vendable]
    return accounts


def member_role_arns(policy: AccessPolicy, deploy: DeploySettings) -> list[str]:
    """Every role the member-roles template of this stage creates, as ARNs."""
    arns = []
    for account, entry in member_accounts(policy, deploy).items():
        for kind in _KINDS:
            if entry[kind]:
                arns.append(f"arn:{deploy.partition}:iam::{account}:role{entry[f'{kind}_path']}{entry[kind]}")
    return sorted(arns)


def trusted_functions(stage: str) -> list[str]:
    """The role names of ``stage``'s functions that assume member roles (never the rotate function)."""
    return [role_name(stage, f) for f in FUNCTIONS if f in SIGNING]


_ASSUME = ["sts:AssumeRole", "sts:SetSourceIdentity"]


def _trust(stage: str) -> dict[str, Any]:
    trusted = [{"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{ServiceAccountId}}:role/{name}"}
               for name in trusted_functions(stage)]
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${ServiceAccountId}:root"}},
        "Action": _ASSUME,
        # Exactly this stage's function roles (by ARN, so they need not exist yet).
        "Condition": {"ArnEquals": {"aws:PrincipalArn": trusted}},
    }, {"Fn::If": ["HasOperators", {
        # The people the deployer names (they must exist): their rdsvend canary and doctor sign
        # and read as the scheduled canary does.
        "Sid": "Operators", "Effect": "Allow", "Principal": {"AWS": {"Ref": OPERATORS_PARAMETER}},
        "Action": _ASSUME,
    }, {"Ref": "AWS::NoValue"}]}]}


def _dsql_statement(sid: str, flag: str, action: str, arns: str) -> dict[str, Any]:
    return {"Fn::If": [flag, {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": _lookup(arns)},
                       {"Ref": "AWS::NoValue"}]}


def _lookup(key: str) -> dict[str, Any]:
    return {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::AccountId"}, key]}


def _has(key: str) -> dict[str, Any]:
    """The account's mapping entry sets ``key`` (not ``""``)."""
    return {"Fn::Not": [{"Fn::Equals": [_lookup(key), ""]}]}


def _mapping_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """What one account gets (the template's ``Accounts`` mapping); ``""`` and ``["none"]``: nothing."""
    return {"SignerRoleName": entry["signer"] or "", "SignerRolePath": entry["signer_path"],
            "ConnectArns": sorted(dict.fromkeys(entry["arns"])) or ["none"],
            "ReaderRoleName": entry["reader"] or "", "ReaderRolePath": entry["reader_path"],
            "DsqlSignerRoleName": entry["dsql_signer"] or "", "DsqlSignerRolePath": entry["dsql_signer_path"],
            # a flag each ("" = none): a Condition cannot test a list for emptiness
            "DsqlConnect": "yes" if entry["dsql_connect"] else "",
            "DsqlConnectArns": sorted(set(entry["dsql_connect"])) or ["none"],
            "DsqlAdmin": "yes" if entry["dsql_admin"] else "",
            "DsqlAdminArns": sorted(set(entry["dsql_admin"])) or ["none"]}


def _reader_statements() -> list[dict[str, Any]]:
    own_account = "${AWS::AccountId}"
    return [
        # On "*": listing (rdsvend discover) names no database, and IAM authorizes such a call on
        # "*"; a role of this account describes only this account's databases either way.
        {"Sid": "DescribeDatabases", "Effect": "Allow",
         "Action": ["rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:DescribeDBProxies",
                    "rds:DescribeDBProxyTargets"],
         "Resource": "*"},
        {"Sid": "ListDsqlClusters", "Effect": "Allow", "Action": ["dsql:GetCluster", "dsql:ListClusters"],
         "Resource": "*"},
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


def _role(stage: str, kind: str, description: str, policy: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    """One of the roles: named from the account's mapping entry (``<kind>RoleName``, ``<kind>RolePath``),
    created when it names one (condition ``Has<kind>``), trusting the stage's functions."""
    return {"Type": "AWS::IAM::Role", "Condition": f"Has{kind}", "Properties": {
        "RoleName": _lookup(f"{kind}RoleName"), "Path": _lookup(f"{kind}RolePath"),
        "Description": f"rdsvend {stage}: {description}", "MaxSessionDuration": 3600,
        "AssumeRolePolicyDocument": _trust(stage),
        "Policies": [{"PolicyName": policy, "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}]}}


def _resources(stage: str) -> dict[str, Any]:
    return {
        "SignerRole": _role(stage, "Signer", "signs RDS IAM auth tokens for the declared db users", SIGNER_POLICY, [
            {"Sid": "ConnectAsDeclaredDbUsers", "Effect": "Allow", "Action": "rds-db:connect",
             "Resource": _lookup("ConnectArns")}]),
        "ReaderRole": _role(stage, "Reader", "reads RDS, the signer's IAM policies and login refusals",
                            READER_POLICY, _reader_statements()),
        "DsqlSignerRole": _role(stage, "DsqlSigner", "signs Aurora DSQL auth tokens for the declared clusters",
                                DSQL_SIGNER_POLICY, [
                                    _dsql_statement("ConnectToDeclaredClusters", "HasDsqlConnect", "dsql:DbConnect",
                                                    "DsqlConnectArns"),
                                    _dsql_statement("ConnectAsAdminToDeclaredClusters", "HasDsqlAdmin",
                                                    "dsql:DbConnectAdmin", "DsqlAdminArns")]),
    }


def member_roles_template(policy: AccessPolicy, deploy: DeploySettings, stage: str) -> dict[str, Any]:
    accounts = member_accounts(policy, deploy)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"rdsvend {stage}: signer and reader roles in a database account (StackSet)",
        "Metadata": {"rdsvend": {"stage": stage, "accounts": sorted(accounts)}},
        "Parameters": {
            "ServiceAccountId": {"Type": "String", "Default": deploy.account, "AllowedPattern": r"^\d{12}$",
                                 "Description": f"the account rdsvend's {stage} functions run in"},
            OPERATORS_PARAMETER: {"Type": "CommaDelimitedList", "Default": "",
                                  "Description": "people (IAM user or role ARNs) who may also assume these roles, "
                                                 "to run rdsvend canary, doctor and discover; none by default"},
        },
        "Mappings": {"Accounts": {account: _mapping_entry(entry) for account, entry in sorted(accounts.items())}},
        "Conditions": {"HasSigner": _has("SignerRoleName"), "HasReader": _has("ReaderRoleName"),
                       "HasDsqlSigner": _has("DsqlSignerRoleName"), "HasDsqlConnect": _has("DsqlConnect"),
                       "HasDsqlAdmin": _has("DsqlAdmin"),
                       "HasOperators": {"Fn::Not": [{"Fn::Equals": [
                           {"Fn::Join": ["", {"Ref": OPERATORS_PARAMETER}]}, ""]}]}},
        "Resources": _resources(stage),
        "Outputs": {f"{logical}Arn": {"Condition": f"Has{logical.removesuffix('Role')}",
                                      "Value": {"Fn::GetAtt": [logical, "Arn"]}}
                    for logical in ("SignerRole", "ReaderRole", "DsqlSignerRole")},
    }
