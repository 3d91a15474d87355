"""One target's checks, in order, with their dependencies.

The order matters for diagnosis: a check whose prerequisite *failed* is skipped with the
reason, so each fault shows up as one failing check instead of a cascade. In particular
``db.connect`` is not attempted when RDS, IAM, the SCPs or the role checks already say a
token would be refused (it would only add "PAM authentication failed"). A prerequisite that
*errored* (could not be evaluated) does not stop the connection attempt: the connection is
then the only proof left.

Where the role checks read the catalogs:

- with an administrator DSN (``RDSVEND_CANARY_ADMIN_DSN``, or the local stack's
  ``RDSVEND_LOCAL_ADMIN_DSN``) whose host and port are the target's, the catalogs are read
  through it *before* the login attempt, so a revoked ``rds_iam`` is named as such;
- otherwise on the target user's own token connection, after ``db.connect`` succeeds (every
  role may read ``pg_roles``, ``pg_auth_members`` and ``pg_namespace``; no extra credential
  is needed in production). Kerberos users get no token: their ``db.rds_ad`` / ``db.tier`` are
  read through an ``auth: iam`` sibling's connection on the same database, or skipped.
"""
from __future__ import annotations

from typing import Any

from chalicelib.canary.checks_auth_log import check_auth_errors
from chalicelib.canary.checks_db import check_tier
from chalicelib.canary.checks_kerberos import check_directory_role, check_rds_ad
from chalicelib.canary.checks_rds import RdsResource, effective_endpoint
from chalicelib.canary.model import TargetReport, errored
from chalicelib.canary.target_db import DbTarget, admin_facts, db_target_for, login_facts, run_iam_db
from chalicelib.canary.target_dsql import run_dsql
from chalicelib.canary.target_password import run_password
from chalicelib.canary.target_proxy import run_proxy
from chalicelib.canary.target_rds import rds_checks, signer_checks
from chalicelib.canary.target_run import (
    CanaryDeps,
    Deadline,
    TargetRun,
    TargetStop,
    failed_ids,
    guard,
    planned_checks,
    remaining_or_stop,
)
from chalicelib.engines.base import ConnectParams, DbConnectError
from chalicelib.errors import ProbeError, RdsvendError
from chalicelib.policy.model import Database, DbUser

__all__ = ["run_target", "crash_report"]


def run_target(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
               run: TargetRun | None = None) -> TargetReport:
    """Every check for (database, user); never raises for anything a target can do."""
    run = run or TargetRun(database, user)
    try:
        _run(database, user, deps, deadline, run)
    except TargetStop:
        return run.report(timed_out=deadline.seconds)
    return run.report()


def _run(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun) -> None:
    if database.is_dsql:  # nothing of it is in RDS: the DSQL API, IAM, a login, the role mapping
        run_dsql(database, user, deps, deadline, run)
        return
    if database.target is not None and user.auth == "iam":  # through RDS Proxy: two legs
        run_proxy(database, user, deps, deadline, run)
        return
    resource = rds_checks(database, user, deps, deadline, run)
    rds_down = failed_ids(run.results, "rds.found")
    host, port = effective_endpoint(database, resource)
    target = db_target_for(database.engine)
    if user.auth == "kerberos":
        _kerberos(target, database, user, deps, deadline, run, resource, host, port, rds_down)
    elif user.auth == "password":
        run_password(database, user, deps, deadline, run, rds_down)
    elif user.auth == "iam":
        _iam_checks(database, user, deps, deadline, run, resource)
        run_iam_db(target, database, user, deps, deadline, run, resource, host, port, rds_down)
    else:
        guard(run, deadline, "db.tier")
        dbname = database.dbname or target.default_dbname
        facts = admin_facts(target, deps, deadline, host, port, dbname, user.name) if not rds_down else None
        run.record(check_tier(user, facts, "password users are inspected only with an admin DSN"))


def _iam_checks(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
                resource: RdsResource | None) -> None:
    """The signer's IAM policies and the SCPs allow rds-db:connect; RDS logged no refusal."""
    signer_checks(database, user, deps, deadline, run, resource)
    guard(run, deadline, "rds.auth_errors")
    run.record(check_auth_errors(database, user.name, deps.auth_log))


def _kerberos(target: DbTarget, database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
              run: TargetRun, resource: RdsResource | None, host: str | None, port: int | None,
              rds_down: list[str]) -> None:
    guard(run, deadline, "iam.directory_role")
    role: Any = None
    memberships = [d for d in (resource.domains if resource else ()) if d.iam_role_name]
    if memberships:
        try:
            role = deps.directory.describe(memberships[0].iam_role_name or "",
                                           account=resource.account if resource else None)
        except ProbeError as exc:
            role = exc
    run.record(check_directory_role(resource, role))

    guard(run, deadline, "db.rds_ad")
    dbname = database.dbname or target.default_dbname
    facts: Any = None
    why = ""
    if rds_down:
        why = "rds.found failed"
    elif not target.kerberos:
        why = f"the database checks support PostgreSQL, not {database.engine}"
    elif not host or not port:
        why = "the endpoint is unknown"
    elif deps.admin is not None and deps.admin.covers(host, port):
        facts = admin_facts(target, deps, deadline, host, port, dbname, user.name)
    else:
        facts, why = _sibling_facts(target, database, user, deps, deadline, resource, host, port, dbname)
    run.record(check_rds_ad(user.name, facts, why))
    run.record(check_tier(user, facts, why))


def _sibling_facts(target: DbTarget, database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
                   resource: RdsResource | None, host: str, port: int, dbname: str) -> tuple[Any, str]:
    """Read a Kerberos user's roles through an ``auth: iam`` user's token connection."""
    sibling = next((u for u in database.users.values() if u.auth == "iam"), None)
    connector = target.connector(deps)
    if sibling is None or connector is None:
        return None, ("no admin DSN reaches this database and it has no auth: iam user to read the "
                      "catalogs as (set RDSVEND_CANARY_ADMIN_DSN)")
    try:
        token = deps.tokens.token(database, sibling.name, host, port,
                                  resource.resource_id if resource else None)
    except ProbeError as exc:
        return None, f"could not sign a token for {sibling.name} to read the catalogs: {exc.cause}"
    params = ConnectParams(host=host, port=port, dbname=dbname, user=sibling.name, password=token,
                           sslrootcert=deps.ssl_root_cert, connect_timeout=max(2, int(remaining_or_stop(deadline))))
    try:
        session = connector.connect(params)
    except DbConnectError as exc:
        return None, f"could not read the catalogs as {sibling.name}: {exc.message}"
    try:
        return login_facts(target, session, user.name), ""
    finally:
        session.close()


def crash_report(database: Database, user: DbUser, exc: BaseException) -> TargetReport:
    """A target whose checks raised something unexpected: every check is an error."""
    kind = type(exc).__name__
    detail = str(exc)[:200] if isinstance(exc, RdsvendError) else ""
    checks = tuple(errored(cid, f"internal error while checking: {kind}" + (f": {detail}" if detail else ""),
                           "report this to the rdsvend maintainers with the canary's log line")
                   for cid in planned_checks(user, database.engine, proxy=database.target is not None))
    return TargetReport(database.name, user.name, checks, user.auth)
