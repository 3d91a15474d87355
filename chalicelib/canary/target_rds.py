"""The RDS side of a target, in the order the diagnosis needs it, for an instance or cluster
(:mod:`chalicelib.canary.target`) and for leg 1 of an RDS Proxy (:mod:`chalicelib.canary.target_proxy`):
``rds.found``, the login switch (``rds.iam_auth_enabled`` for an IAM user, ``rds.domain_joined``
for a Kerberos one), ``rds.endpoint``; then whether the signer's IAM policies and the SCPs allow
``rds-db:connect`` on the user's dbuser ARN (``iam.signer_allows``, ``org.scp_allows``).

Each result goes through ``record`` (by default the run's own), so that the proxy can label
its checks with their leg.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.canary.checks_iam import check_scp_allows, check_signer_allows
from chalicelib.canary.checks_rds import (
    RdsResource,
    check_domain_joined,
    check_endpoint,
    check_found,
    check_iam_auth_enabled,
    dbuser_arn,
)
from chalicelib.canary.model import CheckResult
from chalicelib.canary.target_run import CanaryDeps, Deadline, TargetRun, guard
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database, DbUser

__all__ = ["Record", "describe", "rds_checks", "signer_checks"]

#: where a check's result goes (``TargetRun.record``, or a wrapper around it)
Record = Callable[[CheckResult], CheckResult]


def describe(deps: CanaryDeps, database: Database) -> RdsResource | None | ProbeError:
    """RDS's description of ``database`` (None: no such resource; the error when RDS could not say)."""
    try:
        return deps.rds.describe(database)
    except ProbeError as exc:
        return exc


def _searched(deps: CanaryDeps, database: Database) -> Any:
    """Where the RDS facts looked for ``database`` (None when the adapter cannot say)."""
    where = getattr(deps.rds, "searched", None)
    if where is None:
        return None
    try:
        return where(database)
    except Exception:  # noqa: BLE001 - naming the account is a nicety, never a failure
        return None


def rds_checks(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun, *,
               record: Record | None = None, name_search: bool = True) -> RdsResource | None:
    """``rds.found``, the user's login switch and ``rds.endpoint``; the resource RDS described.
    ``name_search``: a resource RDS did not show is reported with where it was looked for."""
    record = record or run.record
    guard(run, deadline, "rds.found")
    described = describe(deps, database)
    shown = isinstance(described, RdsResource)
    record(check_found(database, described, None if shown or not name_search else _searched(deps, database)))
    resource = described if isinstance(described, RdsResource) else None
    if user.auth == "iam":
        guard(run, deadline, "rds.iam_auth_enabled")
        record(check_iam_auth_enabled(database, resource))
    elif user.auth == "kerberos":
        guard(run, deadline, "rds.domain_joined")
        record(check_domain_joined(database, resource))
    guard(run, deadline, "rds.endpoint")
    record(check_endpoint(database, resource))
    return resource


def signer_checks(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
                  resource: RdsResource | None, *, record: Record | None = None) -> None:
    """``iam.signer_allows`` and ``org.scp_allows``: rds-db:connect as ``user``, evaluated once for both."""
    record = record or run.record
    arn = dbuser_arn(database, resource, user.name) if resource else None
    principal: str | None = None
    facts_or_error: Any = None
    guard(run, deadline, "iam.signer_allows")
    if arn is not None and resource is not None:
        try:
            principal = deps.signer.principal(database)
            facts_or_error = deps.connect.evaluate(principal, arn, account_id=resource.account or "")
        except ProbeError as exc:
            facts_or_error = exc
    record(check_signer_allows(facts_or_error, principal=principal, dbuser_arn=arn))
    guard(run, deadline, "org.scp_allows")
    record(check_scp_allows(facts_or_error, principal=principal, dbuser_arn=arn))
