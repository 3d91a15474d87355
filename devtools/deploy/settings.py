"""The deployment's inputs: ``policies/deploy.yaml`` (every stage with the account, region and
organization its functions run in and the access policy it serves; the RDS resource id of every
declared database) and, per stage, ``.chalice/config.json`` (the environment the functions get
and the policy file each uses). The two name the same stages (:func:`check_stages_agree`).

Nothing here holds an account or region for a template: what the stack can know from where it
is deployed (the account, the alert topic's ARN, the server id: :data:`STACK_SET`) is set by
the stack, never in ``.chalice/config.json``.

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

from chalicelib.aws.arn import ACCOUNT_ID, ORG_ID, PARTITION, REGION, ROLE_ARN
from chalicelib.errors import PolicyLoadError
from chalicelib.iam.rdsdb import is_resource_id

__all__ = [
    "FUNCTIONS",
    "VENDING",
    "GRANT_FUNCTIONS",
    "lambda_function_name",
    "role_name",
    "DeploySettings",
    "DeployFile",
    "StageSettings",
    "STACK_SET",
    "STAGE_NAME",
    "load_deploy_file",
    "check_stages_agree",
    "DeployConfigError",
    "load_deploy_settings",
    "load_chalice_config",
    "function_environment",
    "stage_settings",
]

#: The Lambda functions rdsvend deploys (Chalice's names).
FUNCTIONS = ("api_handler", "vend", "canary", "rotate")
#: The functions that vend tokens to callers (they share the fleet-wide rate limit).
VENDING = ("api_handler", "vend")

_ACCOUNT = ACCOUNT_ID
_PARTITION = PARTITION
#: The environment the stack gives every function from the account and region it is deployed
#: to: never written in .chalice/config.json (an account or region there would be a literal).
STACK_SET = ("RDSVEND_ALERT_TOPIC", "RDSVEND_SERVER_ID", "RDSVEND_SERVICE_ACCOUNT", "RDSVEND_CANARY_NETWORK")
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
# The same shapes the access policy accepts.
_REGION, _ORG_ID, _ROLE_ARN = REGION, ORG_ID, ROLE_ARN


class DeployConfigError(PolicyLoadError):
    """``policies/deploy.yaml`` or ``.chalice/config.json`` is missing a value or has a bad one."""


@dataclass(frozen=True)
class DeploySettings:
    """One stage of ``policies/deploy.yaml``: where its functions run and which policy it serves."""

    partition: str
    account: str
    region: str
    org_id: str
    access_policy: Path
    resource_ids: Mapping[str, str]
    source: str = "deploy.yaml"
    stage: str = ""


@dataclass(frozen=True)
class DeployFile:
    """``policies/deploy.yaml``: every stage, by name."""

    stages: Mapping[str, DeploySettings]
    source: str = "deploy.yaml"

    def stage(self, name: str) -> DeploySettings:
        if name not in self.stages:
            raise DeployConfigError(f"no stage '{name}'", source=self.source, field="stages")
        return self.stages[name]


@dataclass(frozen=True)
class StageSettings:
    stage: str
    policy_parameter: str  # the SSM name, "/rdsvend/<stage>/access-policy"
    state_table: str  # name
    policy_files: Mapping[str, str]  # function -> path relative to .chalice/
    org_role: str | None = None  # RDSVEND_ORG_ROLE_ARN: the canary reads Organizations through it
    vpc_functions: frozenset[str] = frozenset()  # functions given subnet_ids (they need ENIs)
    rate_table: str | None = None  # RDSVEND_RATE_TABLE of the vending functions: the fleet-wide limit
    grants_table: str | None = None  # RDSVEND_GRANTS_TABLE: just-in-time grants (vending functions, canary)

    @property
    def topic_name(self) -> str:
        """The stage's alert topic (the stack creates it and gives its ARN to the canary)."""
        return f"rdsvend-{self.stage}-alerts"


_STAGE_KEYS = {"account", "region", "org_id", "access_policy"}
#: A stage name as Chalice and every physical name built from it accept it.
STAGE_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")


# -- inputs ---------------------------------------------------------------------------------
def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployConfigError(f"cannot read file: {exc.strerror or exc}", source=str(path)) from exc
    except yaml.YAMLError as exc:
        raise DeployConfigError("invalid YAML", source=str(path)) from exc


def _resource_ids(data: Mapping[str, Any], source: str) -> dict[str, str]:
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
    return dict(ids)


def _stage(name: Any, spec: Any, path: Path, partition: str, ids: Mapping[str, str]) -> DeploySettings:
    source = str(path)
    if not isinstance(name, str) or not STAGE_NAME.fullmatch(name):
        raise DeployConfigError(f"invalid stage name {name!r} (lower-case letters and digits, at most 16)",
                                source=source, field="stages")
    where = f"stages.{name}"
    if not isinstance(spec, dict):
        raise DeployConfigError("must be a mapping (account, region, org_id, access_policy)",
                                source=source, field=where)
    for key in spec:
        if key not in _STAGE_KEYS:
            raise DeployConfigError(f"unknown key '{key}'", source=source, field=where)

    def text(key: str, pattern: re.Pattern[str]) -> str:
        value = spec.get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise DeployConfigError(f"invalid value {value!r}", source=source, field=f"{where}.{key}")
        return value

    access = spec.get("access_policy")
    if not isinstance(access, str) or not access:
        raise DeployConfigError("must name the access policy file", source=source, field=f"{where}.access_policy")
    return DeploySettings(partition=partition, account=text("account", _ACCOUNT), region=text("region", _REGION),
                          org_id=text("org_id", _ORG_ID), access_policy=path.parent / access,
                          resource_ids=ids, source=source, stage=name)


def load_deploy_file(path: str | Path) -> DeployFile:
    """Every stage of ``policies/deploy.yaml``; a bad value is an error naming its field."""
    path = Path(path)
    source = str(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise DeployConfigError("must be a mapping", source=source)
    for key in data:
        if key not in {"partition", "stages", "resource_ids"}:
            raise DeployConfigError(f"unknown key '{key}'", source=source)
    partition = data.get("partition", "aws")
    if not isinstance(partition, str) or not _PARTITION.fullmatch(partition):
        raise DeployConfigError(f"invalid value {partition!r}", source=source, field="partition")
    stages = data.get("stages")
    if not isinstance(stages, dict) or not stages:
        raise DeployConfigError("must name at least one stage (account, region, org_id, access_policy)",
                                source=source, field="stages")
    ids = _resource_ids(data, source)
    return DeployFile({name: _stage(name, spec, path, partition, ids) for name, spec in stages.items()},
                      source=source)


def load_deploy_settings(path: str | Path, stage: str) -> DeploySettings:
    """One stage of ``policies/deploy.yaml``."""
    return load_deploy_file(path).stage(stage)


def check_stages_agree(deploy: DeployFile, config: Mapping[str, Any],
                       config_source: str = ".chalice/config.json") -> None:
    """A stage one file has and the other lacks is refused, naming both files."""
    chalice = set(config.get("stages", {}))
    for stage in sorted(chalice - set(deploy.stages)):
        raise DeployConfigError(f"stage '{stage}' is in {config_source} but not in {deploy.source}: "
                                "add it to both or remove it from both", source=deploy.source, field="stages")
    for stage in sorted(set(deploy.stages) - chalice):
        raise DeployConfigError(f"stage '{stage}' is in {deploy.source} but not in {config_source}: "
                                "add it to both or remove it from both", source=deploy.source, field="stages")


def load_chalice_config(project_dir: str | Path) -> dict[str, Any]:
    path = Path(project_dir) / ".chalice" / "config.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployConfigError(f"cannot read file: {exc.strerror or exc}", source=str(path)) from exc
    except ValueError as exc:
        raise DeployConfigError(f"invalid JSON: {exc}", source=str(path)) from exc
    return config


def function_environment(config: Mapping[str, Any], stage: str, function: str) -> dict[str, str]:
    """The environment Chalice gives ``function`` in ``stage`` (its merge order); the stack adds
    :func:`devtools.deploy.stack.stack_environment`."""
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
        value = function_environment(config, stage, function).get(key)
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
    for function in FUNCTIONS:
        for key in STACK_SET:
            if key in function_environment(config, stage, function):
                raise DeployConfigError(f"{key} is set by the stack (from the account and region it is deployed "
                                        f"to); remove it from function '{function}'",
                                        source=source, field=f"stages.{stage}")
    table = env("canary", "RDSVEND_STATE_TABLE")
    if not _TABLE.fullmatch(table):
        raise DeployConfigError(f"RDSVEND_STATE_TABLE '{table}' is not a DynamoDB table name",
                                source=source, field=f"stages.{stage}")
    org_role = function_environment(config, stage, "canary").get("RDSVEND_ORG_ROLE_ARN") or None
    if org_role is not None and not _ROLE_ARN.fullmatch(org_role):
        raise DeployConfigError(f"RDSVEND_ORG_ROLE_ARN '{org_role}' is not a role ARN",
                                source=source, field=f"stages.{stage}")
    rate_tables = {function_environment(config, stage, f).get("RDSVEND_RATE_TABLE") or None for f in VENDING}
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
    return StageSettings(stage=stage, policy_parameter=where[len("ssm:"):], state_table=table,
                         policy_files=files, org_role=org_role, vpc_functions=vpc,
                         rate_table=rate_table, grants_table=grants_table)


#: the functions that read the grants table: the vending ones (requests, decisions, live grants)
#: and the canary (its run expires grants and ends sessions)
GRANT_FUNCTIONS = (*VENDING, "canary")


def _grants_table(config: Mapping[str, Any], stage: str, source: str) -> str | None:
    """``RDSVEND_GRANTS_TABLE``, the same for every function that reads it."""
    tables = {function_environment(config, stage, f).get("RDSVEND_GRANTS_TABLE") or None for f in GRANT_FUNCTIONS}
    if len(tables) != 1:
        raise DeployConfigError("the vending functions and the canary read different RDSVEND_GRANTS_TABLE values",
                                source=source, field=f"stages.{stage}")
    (table,) = tables
    if table is not None and not _TABLE.fullmatch(table):
        raise DeployConfigError(f"RDSVEND_GRANTS_TABLE '{table}' is not a DynamoDB table name",
                                source=source, field=f"stages.{stage}")
    return table


def role_name(stage: str, function: str) -> str:
    """The IAM role of ``function`` in ``stage`` (the stack names it; Chalice would not)."""
    return f"rdsvend-{stage}-{function}"


def lambda_function_name(stage: str, function: str) -> str:
    # Chalice names the API handler <app>-<stage>, every other function <app>-<stage>-<name>.
    return f"rdsvend-{stage}" if function == "api_handler" else f"rdsvend-{stage}-{function}"
