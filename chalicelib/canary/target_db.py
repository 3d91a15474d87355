"""The database half of a target, the same for every engine: one interface (:class:`DbTarget`),
implemented per engine family (:mod:`.target_postgres`, :mod:`.target_mysql`), and the order the
checks run in (:func:`run_iam_db`, :func:`run_password_db`).

Order, for every engine: with an administrator connection that reaches the server, the user's
facts are read before the login (so a removed ``rds_iam`` or IAM plugin is named as such);
``db.connect`` is not attempted when a check already says the token would be refused; otherwise
the facts are read on the login's own connection once it is open. A prerequisite that *errored*
does not stop the login: it is then the only proof left.
"""
from __future__ import annotations

import time
from typing import Any, Protocol

from chalicelib.canary.checks_password import check_password_login
from chalicelib.canary.checks_rds import RdsResource
from chalicelib.canary.model import CheckResult, errored, skipped
from chalicelib.canary.target_mysql import MysqlTarget
from chalicelib.canary.target_postgres import PostgresTarget
from chalicelib.canary.target_run import (
    CanaryDeps,
    DbConnector,
    Deadline,
    TargetRun,
    failed_ids,
    guard,
    remaining_or_stop,
)
from chalicelib.engines.base import AdminInspector, ConnectParams, DbConnectError
from chalicelib.engines.registry import family_of
from chalicelib.engines.secret import DbSecret
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database, DbUser

__all__ = ["DbTarget", "db_target_for", "run_iam_db", "run_password_db", "admin_facts", "login_facts"]

#: the checks whose failure means a token would be refused, whatever the engine
_TOKEN_BLOCKERS = ("rds.found", "rds.iam_auth_enabled", "iam.signer_allows", "org.scp_allows")


class DbTarget(Protocol):
    """What the canary's database phase needs from one engine family."""

    family: str
    #: the database a login uses when neither the policy nor the secret names one
    default_dbname: str
    #: the checks read from the user's facts that, failed, mean a token would be refused
    fact_checks: tuple[str, ...]
    #: how the server refuses such a token, for db.connect's "not attempted" line
    refused: str
    #: Kerberos users' role checks run on this engine
    kerberos: bool

    def connector(self, deps: CanaryDeps) -> DbConnector | None: ...

    def admin(self, deps: CanaryDeps) -> AdminInspector[Any] | None: ...

    def iam_verdicts(self, database: Database, user: DbUser, facts: Any, why: str) -> list[CheckResult]: ...

    def password_verdicts(self, login_user: DbUser, facts: Any, why: str) -> list[CheckResult]: ...

    def connect_verdict(self, host: str, port: int, user: str, error: DbConnectError | None,
                        latency_ms: float | None, cafile: str | None) -> CheckResult: ...

    def facts_failed(self, exc: Exception) -> DbConnectError: ...


_TARGETS: dict[str, DbTarget] = {"postgres": PostgresTarget(), "mysql": MysqlTarget()}


def db_target_for(engine: str) -> DbTarget:
    return _TARGETS[family_of(engine)]


def admin_facts(target: DbTarget, deps: CanaryDeps, deadline: Deadline, host: str | None, port: int | None,
                dbname: str, user: str) -> Any:
    """The user's facts through the administrator's connection; None when there is none for this server."""
    admin = target.admin(deps)
    if admin is None or not host or not port or not admin.covers(host, port):
        return None
    remaining = remaining_or_stop(deadline)
    try:
        return admin.user_facts(host, port, dbname, user, remaining)
    except DbConnectError as exc:
        return exc


def login_facts(target: DbTarget, session: Any, user: str) -> Any:
    """The user's facts on an open login: never raises (a failed read is an error, not a pass)."""
    try:
        return session.user_facts(user)
    except DbConnectError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a failed read is an error, never a pass
        return target.facts_failed(exc)


def _timed_connect(connector: DbConnector, params: ConnectParams) -> tuple[Any, float]:
    started = time.perf_counter()
    session = connector.connect(params)
    return session, round((time.perf_counter() - started) * 1000.0, 1)


def _iam_login(target: DbTarget, database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
               run: TargetRun, resource: RdsResource | None, host: str, port: int,
               *, inspect: bool) -> tuple[Any, str]:
    connector = target.connector(deps)
    assert connector is not None  # run_iam_db checked it
    try:
        token = deps.tokens.token(database, user.name, host, port, resource.resource_id if resource else None)
    except ProbeError as exc:
        run.record(errored("db.connect", f"could not sign a token: {exc.cause}",
                           "let the canary sign (sts:AssumeRole on the signer role, valid "
                           "credentials), then re-run", host=host, port=port, cause=exc.cause))
        return None, "no token could be signed"
    params = ConnectParams(host=host, port=port, dbname=database.dbname or target.default_dbname, user=user.name,
                           password=token, sslrootcert=deps.ssl_root_cert,
                           connect_timeout=max(2, int(remaining_or_stop(deadline))))
    try:
        session, latency = _timed_connect(connector, params)
    except DbConnectError as exc:
        run.record(target.connect_verdict(host, port, user.name, exc, None, deps.ssl_root_cert))
        return None, "db.connect did not succeed"
    run.record(target.connect_verdict(host, port, user.name, None, latency, deps.ssl_root_cert))
    try:
        return (login_facts(target, session, user.name) if inspect else None), ""
    finally:
        session.close()


def _connect_or_why(target: DbTarget, database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
                    run: TargetRun, resource: RdsResource | None, host: str | None, port: int | None,
                    *, inspect: bool) -> tuple[Any, str]:
    blockers = failed_ids(run.results, *_TOKEN_BLOCKERS, *target.fact_checks)
    if blockers:
        why = f"{', '.join(blockers)} failed"
        run.record(skipped("db.connect", f"not attempted: {why}; the token would be refused {target.refused}",
                           blocked_by=blockers))
        return None, why
    if not host or not port:
        run.record(errored("db.connect", "no endpoint to connect to: the policy names no host and RDS "
                           "did not describe one", "fix rds.found first, or set host/port in the policy"))
        return None, "the endpoint is unknown"
    if target.connector(deps) is None:
        run.record(errored("db.connect", f"the canary has no {target.family} connector", "install its driver"))
        return None, f"no {target.family} driver"
    return _iam_login(target, database, user, deps, deadline, run, resource, host, port, inspect=inspect)


def run_iam_db(target: DbTarget, database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
               run: TargetRun, resource: RdsResource | None, host: str | None, port: int | None,
               rds_down: list[str]) -> None:
    """An ``auth: iam`` user's database checks: its facts, the token login, in that order."""
    dbname = database.dbname or target.default_dbname
    admin = target.admin(deps)
    admin_used = False
    if not rds_down and admin is not None and host and port and admin.covers(host, port):
        guard(run, deadline, target.fact_checks[0])
        facts = admin_facts(target, deps, deadline, host, port, dbname, user.name)
        admin_used = True
        for result in target.iam_verdicts(database, user, facts, ""):
            run.record(result)
    guard(run, deadline, "db.connect")
    session_facts, why = _connect_or_why(target, database, user, deps, deadline, run, resource, host, port,
                                         inspect=not admin_used)
    if not admin_used:
        for result in target.iam_verdicts(database, user, session_facts, why or "db.connect did not succeed"):
            run.record(result)


def _password_login(target: DbTarget, connector: DbConnector, secret: DbSecret, deps: CanaryDeps,
                    deadline: Deadline, run: TargetRun, dbname: str, *, inspect: bool) -> tuple[Any, str]:
    params = ConnectParams(host=secret.host, port=secret.port, dbname=dbname, user=secret.username,
                           password=secret.password, sslrootcert=deps.ssl_root_cert,
                           connect_timeout=max(2, int(remaining_or_stop(deadline))))
    try:
        session, latency = _timed_connect(connector, params)
    except DbConnectError as exc:
        run.record(check_password_login(secret, exc, None, deps.ssl_root_cert))
        return None, "db.password_login did not succeed"
    run.record(check_password_login(secret, None, latency, deps.ssl_root_cert))
    try:
        return (login_facts(target, session, secret.username) if inspect else None), ""
    finally:
        session.close()


def run_password_db(target: DbTarget, secret: DbSecret, login_user: DbUser, deps: CanaryDeps, deadline: Deadline,
                    run: TargetRun, dbname: str, rds_down: list[str]) -> None:
    """An ``auth: password`` user's database checks: AWSCURRENT logs in; its facts."""
    connector = target.connector(deps)
    if connector is None:
        for cid in ("db.password_login", "db.not_iam", "db.tier"):
            run.record(errored(cid, f"the canary has no {target.family} connector configured"))
        return
    dbname = secret.dbname or dbname
    admin = target.admin(deps)
    admin_used = False
    if not rds_down and admin is not None and admin.covers(secret.host, secret.port):
        guard(run, deadline, "db.not_iam")
        facts = admin_facts(target, deps, deadline, secret.host, secret.port, dbname, secret.username)
        admin_used = True
        for result in target.password_verdicts(login_user, facts, ""):
            run.record(result)
    guard(run, deadline, "db.password_login")
    session_facts, why = _password_login(target, connector, secret, deps, deadline, run, dbname,
                                         inspect=not admin_used)
    if not admin_used:
        for result in target.password_verdicts(login_user, session_facts, why):
            run.record(result)
