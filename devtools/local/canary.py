"""Point the canary at a running local stack (``make demo``, the end-to-end tests, the bench).

The canary runs as the deployed ``canary`` function's role (``rdsvend-local-canary``, in the
service account, with the generated policy), reads the organization's SCPs through the reader
role in the management account (as a real deployment must: member accounts cannot list SCPs;
its ``RDSVEND_ORG_ROLE_ARN``), and reads role memberships through the local PostgreSQL's
administrator DSN.
"""
from __future__ import annotations

import time
from typing import Any

from chalicelib.canary.factory import canary_deps
from chalicelib.canary.target_run import CanaryDeps
from chalicelib.engines.postgres import PostgresAdmin
from chalicelib.policy.model import AccessPolicy
from devtools.local.aws import AccountSessions
from devtools.local.deployment import ORG_READER_ROLE, create_org_reader
from devtools.local.rds_mysql import mysql_admin_env

#: The local stack's grants table (just-in-time access).
LOCAL_GRANTS_TABLE = "rdsvend-local-grants"

__all__ = ["ORG_READER_ROLE", "ensure_org_reader", "local_canary_env", "local_canary_deps", "operator_canary_env",
           "LocalAdmins", "CANARY"]

#: The deployed function the canary runs as.
CANARY = "canary"


def ensure_org_reader(info: Any) -> str:
    """The management account's SCP reader role, trusted by the service account: the world's, or
    the one the stack made when it deployed the local stage (made now for a stack that did not)."""

    seeded = info.seeded
    sessions = AccountSessions(info.moto_url, info.region, seeded.management_account)
    return create_org_reader(sessions.client("iam", seeded.management_account), seeded.management_account,
                            seeded.service_account)


def local_canary_env(info: Any) -> dict[str, str]:
    """The environment the canary function would have on the local stack (holds secrets)."""
    env = {
        "AWS_ENDPOINT_URL": info.moto_url,
        "AWS_DEFAULT_REGION": info.region,
        "RDSVEND_POLICY": info.policy_path,
        "PGSSLROOTCERT": info.ca_path,
        "RDSVEND_CANARY_ADMIN_DSN": info.admin_dsn,
        **{k.replace("LOCAL", "CANARY"): v for k, v in mysql_admin_env(info.databases).items()},
        "RDSVEND_ORG_ROLE_ARN": ensure_org_reader(info),
        "RDSVEND_GRANTS_TABLE": LOCAL_GRANTS_TABLE,
        **info.seeded.function(CANARY).env(),
    }
    return env


def local_canary_deps(info: Any, policy: AccessPolicy, *, endpoint_url: str | None = None,
                      env: dict[str, str] | None = None, as_operator: bool = False) -> CanaryDeps:
    """Real adapters, acting as the deployed canary function's role (or, ``as_operator``, as the
    world's operator in the service account, as ``rdsvend canary`` in its shell does) against
    the local stack's moto (or ``endpoint_url``, e.g. a dead port to play an AWS outage).

    The role catalogs of every local PostgreSQL are read through its own superuser DSN."""
    if env is None:
        env = operator_canary_env(info) if as_operator else local_canary_env(info)
    keys = info.seeded.callers["operator"] if as_operator else info.seeded.function(CANARY)
    deps = canary_deps(policy, dict(env), endpoint_url=endpoint_url or info.moto_url,
                       session=keys.session(info.region))
    dsns = list(getattr(info, "admin_dsns", {}).values())
    if dsns:
        deps.admin = LocalAdmins(dsns)
    if deps.auth_log is not None:  # rds.auth_errors: refusals from the moment these deps exist on

        deps.auth_log.since = time.time()
    return deps


def operator_canary_env(info: Any) -> dict[str, str]:
    """``rdsvend local env --as operator``: the operator's shell (holds secrets)."""
    env: dict[str, str] = info.env("operator")  # StackInfo.env (the stack's state imports this module)
    return env


class LocalAdmins:
    """The canary's administrator connection (``AdminInspector``) over several local
    PostgreSQL clusters: each target's catalogs are read through the DSN of its own server."""

    def __init__(self, dsns: list[str]) -> None:
        self._admins = [PostgresAdmin(dsn) for dsn in dsns]

    def __repr__(self) -> str:  # never a DSN: they hold passwords
        return f"LocalAdmins({self._admins!r})"

    def covers(self, host: str | None, port: int | None) -> bool:
        return any(a.covers(host, port) for a in self._admins)

    def user_facts(self, host: str, port: int, dbname: str, user: str, timeout: float) -> Any:
        admin = next(a for a in self._admins if a.covers(host, port))
        return admin.user_facts(host, port, dbname, user, timeout)
