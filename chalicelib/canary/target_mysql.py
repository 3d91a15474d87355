"""The database half of a MySQL-family target (after the RDS, IAM and SCP checks, which are the
same as for PostgreSQL; see :mod:`chalicelib.canary.target`).

Order, as for PostgreSQL: with an administrator connection that reaches the server, the
user's facts (``db.iam_plugin``, ``db.tier``) are read before the login; ``db.connect`` is not
attempted when a check already says the token would be refused; otherwise the facts are read
on the token's own connection once it is open.
"""
from __future__ import annotations

import time
from typing import Any

from chalicelib.canary.checks_db import ConnectParams, DbConnectError
from chalicelib.canary.checks_mysql import (
    MysqlUserFacts,
    check_iam_plugin,
    check_mysql_connect,
    check_mysql_tier,
    flavour_of,
)
from chalicelib.canary.checks_rds import RdsResource
from chalicelib.canary.model import errored, skipped
from chalicelib.canary.target import CanaryDeps, Deadline, TargetRun, _failed, _guard, _Stop
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database, DbUser

__all__ = ["run_mysql_db_checks"]


def _admin_facts(deps: CanaryDeps, deadline: Deadline, user: str) -> MysqlUserFacts | DbConnectError:
    remaining = deadline.remaining()
    if remaining <= 0:
        raise _Stop()
    try:
        return deps.mysql_admin.user_facts(user, remaining)
    except DbConnectError as exc:
        return exc


def run_mysql_db_checks(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
                        resource: RdsResource | None, host: str | None, port: int | None,
                        rds_down: list[str]) -> None:
    flavour = flavour_of(database.engine)
    admin = deps.mysql_admin
    admin_used = False
    if not rds_down and admin is not None and host and port and admin.covers(host, port):
        _guard(run, deadline, "db.iam_plugin")
        facts = _admin_facts(deps, deadline, user.name)
        admin_used = True
        run.record(check_iam_plugin(user.name, facts, flavour=flavour))
        run.record(check_mysql_tier(user, facts))

    _guard(run, deadline, "db.connect")
    blockers = _failed(run.results, "rds.found", "rds.iam_auth_enabled", "iam.signer_allows", "org.scp_allows",
                       "db.iam_plugin")
    session_facts: MysqlUserFacts | DbConnectError | None = None
    why = ""
    if blockers:
        why = f"{', '.join(blockers)} failed"
        run.record(skipped("db.connect", f"not attempted: {why}; the token would be refused (1045 Access denied, "
                           "or 1524 when IAM authentication is off)", blocked_by=blockers))
    elif not host or not port:
        why = "the endpoint is unknown"
        run.record(errored("db.connect", "no endpoint to connect to: the policy names no host and RDS did not "
                           "describe one", "fix rds.found first, or set host/port in the policy"))
    elif deps.mysql_db is None:
        why = "no MySQL driver"
        run.record(errored("db.connect", "the canary has no MySQL connector (PyMySQL)", "install PyMySQL"))
    else:
        session_facts, why = _login(database, user, deps, deadline, run, resource, host, port,
                                    inspect=not admin_used)
    if not admin_used:
        reason = why or "db.connect did not succeed"
        run.record(check_iam_plugin(user.name, session_facts, reason, flavour=flavour))
        run.record(check_mysql_tier(user, session_facts, reason))


def _login(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
           resource: RdsResource | None, host: str, port: int,
           *, inspect: bool) -> tuple[MysqlUserFacts | DbConnectError | None, str]:
    try:
        token = deps.tokens.token(database, user.name, host, port, resource.resource_id if resource else None)
    except ProbeError as exc:
        run.record(errored("db.connect", f"could not sign a token: {exc.cause}",
                           "let the canary sign (sts:AssumeRole on the signer role, valid credentials), then "
                           "re-run", host=host, port=port, cause=exc.cause))
        return None, "no token could be signed"
    remaining = deadline.remaining()
    if remaining <= 0:
        raise _Stop()
    params = ConnectParams(host=host, port=port, dbname=database.dbname or "", user=user.name, password=token,
                           sslrootcert=deps.ssl_root_cert, connect_timeout=max(2, int(remaining)))
    started = time.perf_counter()
    connector: Any = deps.mysql_db
    try:
        session = connector.connect(params)
    except DbConnectError as exc:
        run.record(check_mysql_connect(host=host, port=port, user=user.name, error=exc, latency_ms=None,
                                       cafile=deps.ssl_root_cert))
        return None, "db.connect did not succeed"
    latency = round((time.perf_counter() - started) * 1000.0, 1)
    run.record(check_mysql_connect(host=host, port=port, user=user.name, error=None, latency_ms=latency,
                                   cafile=deps.ssl_root_cert))
    try:
        if not inspect:
            return None, ""
        try:
            return session.user_facts(user.name), ""
        except DbConnectError as exc:
            return exc, ""
        except Exception as exc:  # noqa: BLE001 - a failed query is an error, never a pass
            return DbConnectError("other", f"reading the user's grants failed: {type(exc).__name__}"), ""
    finally:
        session.close()
