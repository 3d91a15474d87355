"""What no two stages may share (``make package`` refuses them before building anything).

- the stages themselves: ``policies/deploy.yaml`` and ``.chalice/config.json`` name the same
  ones (:func:`devtools.deploy.settings.check_stages_agree`);
- a physical name in one account (functions, roles, API, tables, topic, parameter, log groups,
  alarms, dashboard, schedule rule; :func:`devtools.deploy.stack.physical_names`), and a
  member-account role (the signer and reader roles a stage's policy names): the second
  deploy would fail, or worse, one stage would run with the other's role;
- a rotated secret: each secret is rotated by exactly one stage (a dev deploy must not rotate
  the production password);
- a metrics namespace in one account and region: each stage's alarms and dashboard read only
  its own stage's metrics.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.policy.model import AccessPolicy
from devtools.deploy.member_roles import member_role_arns
from devtools.deploy.rotation import declared_secrets
from devtools.deploy.settings import DeployConfigError, DeployFile, check_stages_agree
from devtools.deploy.stack import physical_names, stack_plan

__all__ = ["check_stages"]


def _claim(owners: dict[tuple[str, ...], str], key: tuple[str, ...], stage: str, what: str, source: str) -> None:
    other = owners.setdefault(key, stage)
    if other != stage:
        raise DeployConfigError(f"stages '{other}' and '{stage}' both use {what}: each stage needs its own",
                                source=source, field="stages")


def check_stages(deploy: DeployFile, config: Mapping[str, Any], policies: Mapping[str, AccessPolicy],
                 config_source: str = ".chalice/config.json") -> None:
    """Refuse stages that would collide or share power; ``policies``: each stage's access policy."""
    check_stages_agree(deploy, config, config_source)
    owners: dict[tuple[str, ...], str] = {}
    for stage, settings in deploy.stages.items():
        plan = stack_plan(config, stage, settings)
        for what, name in physical_names(plan).items():
            region = "" if what.startswith("role ") else settings.region  # IAM names are global
            _claim(owners, ("name", settings.account, region, name), stage,
                   f"the {what} name '{name}' in account {settings.account}", deploy.source)
        _claim(owners, ("namespace", settings.account, settings.region, plan.namespace), stage,
               f"the metrics namespace '{plan.namespace}' (POWERTOOLS_METRICS_NAMESPACE) in account "
               f"{settings.account}", config_source)
        policy = policies[stage]
        for arn in member_role_arns(policy, settings):
            _claim(owners, ("role", arn), stage, f"the role '{arn}' (set a stage's own signer_role/reader_role)",
                   str(settings.access_policy))
        for secret, _rotation in declared_secrets(policy):
            _claim(owners, ("secret", secret), stage, f"the rotated secret '{secret}'", str(settings.access_policy))
