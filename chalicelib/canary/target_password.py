"""One ``auth: password`` user's checks, in order: the secret (found, rotated on time), then
the database (AWSCURRENT logs in, not in ``rds_iam``, privileges fit the tier).

Role facts come from the administrator's connection when the canary has one for that server
(read before the login, so a user in ``rds_iam`` is named as such even though its login then
fails), else from the user's own password session after it logs in.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from chalicelib.canary.checks_db import ConnectParams, DbConnectError, RoleFacts, check_tier
from chalicelib.canary.checks_password import (
    SecretView,
    check_not_iam,
    check_password_login,
    check_secret_found,
    check_secret_rotation,
)
from chalicelib.canary.model import errored, skipped
from chalicelib.canary.target import CanaryDeps, Deadline, TargetRun, _admin_facts, _guard, _Stop
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database, DbUser

__all__ = ["run_password"]


def run_password(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
                 dbname: str, rds_down: list[str]) -> None:
    _guard(run, deadline, "secret.found")
    secrets = getattr(deps, "secrets", None)
    view: SecretView | None | ProbeError
    if secrets is None:
        view = ProbeError("the canary has no Secrets Manager reader configured")
    else:
        try:
            view = secrets.read(user.secret or "")
        except ProbeError as exc:
            view = exc
    run.record(check_secret_found(user, view))
    _guard(run, deadline, "secret.rotation")
    if isinstance(view, ProbeError):
        run.record(errored("secret.rotation", f"could not read the secret: {view.cause}"))
    else:
        run.record(check_secret_rotation(user, view))

    secret = view.current if isinstance(view, SecretView) and run.results["secret.found"].ok else None
    ids = ("db.password_login", "db.not_iam", "db.tier")
    if secret is None:
        for cid in ids:
            run.record(skipped(cid, "not checked: the secret could not be read (secret.found)"))
        return
    login_user = replace(user, name=secret.username)
    if secret.family != "postgres":
        _mysql(login_user, secret, deps, deadline, run, rds_down)
        return
    dbname = secret.dbname or dbname

    admin_used = False
    if not rds_down and deps.admin is not None and deps.admin.covers(secret.host, secret.port):
        _guard(run, deadline, "db.not_iam")
        facts = _admin_facts(deps, deadline, secret.host, secret.port, dbname, secret.username)
        admin_used = True
        run.record(check_not_iam(secret.username, facts))
        run.record(check_tier(login_user, facts))

    _guard(run, deadline, "db.password_login")
    remaining = deadline.remaining()
    if remaining <= 0:
        raise _Stop()
    params = ConnectParams(host=secret.host, port=secret.port, dbname=dbname, user=secret.username,
                           password=secret.password, sslrootcert=deps.ssl_root_cert,
                           connect_timeout=max(2, int(remaining)))
    started = time.perf_counter()
    session_facts: RoleFacts | DbConnectError | None = None
    why = ""
    try:
        session = deps.db.connect(params)
    except DbConnectError as exc:
        run.record(check_password_login(secret, exc, None, deps.ssl_root_cert))
        why = "db.password_login did not succeed"
    else:
        latency = round((time.perf_counter() - started) * 1000.0, 1)
        run.record(check_password_login(secret, None, latency, deps.ssl_root_cert))
        try:
            if not admin_used:
                try:
                    session_facts = session.role_facts(secret.username)
                except DbConnectError as exc:
                    session_facts = exc
        finally:
            session.close()
    if not admin_used:
        run.record(check_not_iam(secret.username, session_facts, why))
        run.record(check_tier(login_user, session_facts, why))


def _mysql(login_user: DbUser, secret: Any, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
           rds_down: list[str]) -> None:
    """The MySQL family: the login through PyMySQL (verified TLS); AWSAuthenticationPlugin for db.not_iam."""
    from chalicelib.canary.checks_mysql import check_mysql_tier
    from chalicelib.canary.checks_password import check_not_iam_mysql

    connector = getattr(deps, "mysql_db", None)
    admin = getattr(deps, "mysql_admin", None)
    if connector is None:
        for cid in ("db.password_login", "db.not_iam", "db.tier"):
            run.record(errored(cid, "the canary has no MySQL connector configured"))
        return
    facts: Any = None
    admin_used = False
    if not rds_down and admin is not None and admin.covers(secret.host, secret.port):
        _guard(run, deadline, "db.not_iam")
        admin_used = True
        try:
            facts = admin.user_facts(secret.username, max(1.0, deadline.remaining()))
        except DbConnectError as exc:
            facts = exc
        run.record(check_not_iam_mysql(secret.username, facts))
        run.record(check_mysql_tier(login_user, facts))
    _guard(run, deadline, "db.password_login")
    remaining = deadline.remaining()
    if remaining <= 0:
        raise _Stop()
    params = ConnectParams(host=secret.host, port=secret.port, dbname=secret.dbname or "", user=secret.username,
                           password=secret.password, sslrootcert=deps.ssl_root_cert,
                           connect_timeout=max(2, int(remaining)))
    started = time.perf_counter()
    why = ""
    try:
        session = connector.connect(params)
    except DbConnectError as exc:
        run.record(check_password_login(secret, exc, None, deps.ssl_root_cert))
        why = "db.password_login did not succeed"
    else:
        run.record(check_password_login(secret, None, round((time.perf_counter() - started) * 1000.0, 1),
                                        deps.ssl_root_cert))
        try:
            if not admin_used:
                try:
                    facts = session.user_facts(secret.username)
                except DbConnectError as exc:
                    facts = exc
                except Exception as exc:  # noqa: BLE001 - a failed read is an error, never a pass
                    facts = DbConnectError("other", f"reading the user failed: {type(exc).__name__}")
        finally:
            session.close()
    if not admin_used:
        run.record(check_not_iam_mysql(secret.username, facts, why))
        run.record(check_mysql_tier(login_user, facts, why))
