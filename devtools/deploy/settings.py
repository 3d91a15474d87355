"""The deployment's inputs: ``policies/deploy.yaml`` (the account, region and organization
the functions run in, the RDS resource id of every declared database) and, per stage,
``.chalice/config.json`` (the environment the functions get and the policy file each uses).

Read and checked here once; :mod:`devtools.deploy.documents` turns them into IAM documents
and :mod:`devtools.deploy.stack` into the stage's stack.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chalicelib.aws.arn import ACCOUNT_ID, PARTITION
from chalicelib.errors import PolicyLoadError
from chalicelib.iam.rdsdb import is_resource_id
from chalicelib.policy.loader import ORG_ID, REGION, ROLE_ARN

__all__ = [
    "FUNCTIONS",
    "VENDING",
    "GRANT_FUNCTIONS",
    "lambda_function_name",
    "DeploySettings",
    "StageSettings",
    "DeployConfigError",
    "load_deploy_settings",
    "load_chalice_config",
    "stage_settings",
]

#: The Lambda functions rdsvend deploys (Chalice's names).
FUNCTIONS = ("api_handler", "vend", "canary", "rotate")
#: The functions that vend tokens to callers (they share the fleet-wide rate limit).
VENDING = ("api_handler", "vend")

_ACCOUNT = ACCOUNT_ID
_PARTITION = PARTITION
_TOPIC_ARN = re.compile(
    rf"arn:(?P<partition>{PARTITION.pattern}):sns:(?P<region>[a-z0-9-]+):(?P<account>{ACCOUNT_ID.pattern}):[\w-]{{1,256}}")
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
    grants_table: str | None = None  # RDSVEND_GRANTS_TABLE: just-in-time grants (vending functions, canary)


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
    grants_table = _grants_table(config, stage, source)
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
                         rate_table=rate_table, grants_table=grants_table)


#: the functions that read the grants table: the vending ones (requests, decisions, live grants)
#: and the canary (its run expires grants and ends sessions)
GRANT_FUNCTIONS = (*VENDING, "canary")


def _grants_table(config: Mapping[str, Any], stage: str, source: str) -> str | None:
    """``RDSVEND_GRANTS_TABLE``, the same for every function that reads it (the vending functions
    publish requests to ``RDSVEND_ALERT_TOPIC``, and may publish only to the canary's)."""
    tables = {_function_env(config, stage, f).get("RDSVEND_GRANTS_TABLE") or None for f in GRANT_FUNCTIONS}
    if len(tables) != 1:
        raise DeployConfigError("the vending functions and the canary read different RDSVEND_GRANTS_TABLE values",
                                source=source, field=f"stages.{stage}")
    (table,) = tables
    if table is not None and not _TABLE.fullmatch(table):
        raise DeployConfigError(f"RDSVEND_GRANTS_TABLE '{table}' is not a DynamoDB table name",
                                source=source, field=f"stages.{stage}")
    return table


def lambda_function_name(stage: str, function: str) -> str:
    # Chalice names the API handler <app>-<stage>, every other function <app>-<stage>-<name>.
    return f"rdsvend-{stage}" if function == "api_handler" else f"rdsvend-{stage}-{function}"
