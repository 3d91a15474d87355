"""One RDS Proxy target's checks (an ``auth: iam`` user of a ``proxy`` database), in order.

Leg 1 (caller to proxy): ``rds.found`` (the proxy, available), ``rds.iam_auth_enabled``,
``rds.endpoint``, ``iam.signer_allows`` and ``org.scp_allows`` on ``dbuser:prx-.../USER``.
Leg 2 (proxy to target): ``proxy.target`` (registered and healthy), ``proxy.role_allows``
(the proxy's role on the target's resource id, or the user's secret), then the user on the
target through the engine's own checks (:mod:`chalicelib.canary.target_db`: ``db.rds_iam`` /
``db.auth_conflict`` / ``db.tier`` for PostgreSQL, ``db.iam_plugin`` / ``db.tier`` for the MySQL
family), read through an administrator connection that reaches the *target* when there is one
(before the login), else on the login's own session. Last, ``db.connect``: a ``verify-full``
login through the proxy with a token signed for the proxy's endpoint. It is not attempted when
a check of either leg already failed (it could only add "Access denied"); when it fails, its
message and details name the leg that refused.
"""
from __future__ import annotations

import time
from functools import partial
from typing import Any

from chalicelib.aws.arn import dbuser_arn as make_dbuser_arn
from chalicelib.canary.checks_proxy import (
    LEG_OF,
    LEGS,
    check_proxy_target,
    check_role_allows,
    leg_of_refusal,
    on_leg,
)
from chalicelib.canary.checks_rds import RdsResource, effective_endpoint
from chalicelib.canary.model import CheckResult, errored, skipped
from chalicelib.canary.target_db import DbTarget, admin_facts, db_target_for, login_facts
from chalicelib.canary.target_rds import describe, rds_checks, signer_checks
from chalicelib.canary.target_run import CanaryDeps, Deadline, TargetRun, failed_ids, guard, remaining_or_stop
from chalicelib.engines.base import ConnectParams, DbConnectError
from chalicelib.errors import ProbeError
from chalicelib.iam.proxy_leg import GET_SECRET_ACTION, ProxyFacts, proxy_facts
from chalicelib.iam.rdsdb import CONNECT_ACTION
from chalicelib.policy.model import Database, DbUser

__all__ = ["run_proxy"]

#: the checks whose failure means a login through the proxy would be refused (with the engine's own)
_BLOCKERS = ("rds.found", "rds.iam_auth_enabled", "iam.signer_allows", "org.scp_allows", "proxy.target",
             "proxy.role_allows")


def _record(run: TargetRun, result: CheckResult) -> CheckResult:
    return run.record(on_leg(result, LEG_OF.get(result.id)))


def run_proxy(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun) -> None:
    """Every check of a proxy target (:class:`~chalicelib.canary.target_run.TargetStop` when time is up)."""
    proxy = _leg_one(database, user, deps, deadline, run)
    behind = database.behind()
    target = describe(deps, behind) if behind is not None else None
    _proxy_target(database, deps, deadline, run, proxy)
    _role_allows(database, user, deps, deadline, run, proxy, target)
    engine = db_target_for(database.engine)
    facts: Any = None
    admin_used = False
    if isinstance(target, RdsResource) and target.host and target.port and not failed_ids(run.results, "rds.found"):
        admin = engine.admin(deps)
        if admin is not None and admin.covers(target.host, target.port):
            guard(run, deadline, engine.fact_checks[0])
            facts = admin_facts(engine, deps, deadline, target.host, target.port,
                                database.dbname or engine.default_dbname, user.name)
            admin_used = True
            for result in engine.iam_verdicts(database, user, facts, ""):
                _record(run, result)
    guard(run, deadline, "db.connect")
    session_facts, why = _connect(engine, database, user, deps, deadline, run, proxy, inspect=not admin_used)
    if not admin_used:
        for result in engine.iam_verdicts(database, user, session_facts, why or "db.connect did not succeed"):
            _record(run, result)


def _leg_one(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
             run: TargetRun) -> RdsResource | None:
    """The proxy as RDS describes it, and the signer's rds-db:connect on its ``prx-`` dbuser ARN."""
    record = partial(_record, run)
    resource = rds_checks(database, user, deps, deadline, run, record=record, name_search=False)
    signer_checks(database, user, deps, deadline, run, resource, record=record)
    return resource


def _proxy_target(database: Database, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
                  proxy: RdsResource | None) -> None:
    guard(run, deadline, "proxy.target")
    if proxy is None:
        _record(run, skipped("proxy.target", "not checked: rds.found did not describe the proxy"))
        return
    if deps.proxy is None:
        _record(run, errored("proxy.target", "the canary has no way to list the proxy's targets",
                             "build the canary's dependencies with proxy facts (chalicelib.canary.factory)"))
        return
    try:
        targets: Any = deps.proxy.targets(database)
    except ProbeError as exc:
        targets = exc
    _record(run, check_proxy_target(database, targets))


def _requests(database: Database, user: DbUser, facts: ProxyFacts, proxy: RdsResource,
              target: RdsResource) -> list[tuple[str, str]]:
    """What the proxy's role must be allowed for this user: ``rds-db:connect`` on the target's
    dbuser ARN, or ``GetSecretValue`` on the user's secret (every secret when none names the user)."""
    assert database.target is not None
    if database.target.auth == "iam":
        return [(CONNECT_ACTION, make_dbuser_arn(database.region, target.account or "", target.resource_id or "",
                                                 user.name, target.partition))]
    auth = proxy.raw.get("Auth") or []
    mine = [str(a["SecretArn"]) for a in auth if isinstance(a, dict) and a.get("UserName") == user.name
            and a.get("SecretArn")]
    return [(GET_SECRET_ACTION, arn) for arn in (mine or list(facts.secret_arns))]


def _cannot(database: Database, target: RdsResource | None | ProbeError) -> str:
    """Why leg 2 cannot be evaluated for want of the target's resource id ("" when it can)."""
    assert database.target is not None
    what = f"{database.target.kind} '{database.target.identifier}'"
    if isinstance(target, ProbeError):
        return f"could not describe the target {what}: {target.cause}"
    if target is None or not target.resource_id or not target.account:
        return f"RDS does not describe the target {what} (its resource id)"
    return ""


def _evaluate(deps: CanaryDeps, role: str, action: str, resource: str, account: str) -> Any:
    try:
        if action == CONNECT_ACTION:
            return deps.connect.evaluate(role, resource, account_id=account)
        if deps.proxy is None:
            return ProbeError("the canary has no way to read the proxy's role")
        return deps.proxy.allows(role, action, resource)
    except ProbeError as exc:
        return exc


def _role_allows(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
                 proxy: RdsResource | None, target: RdsResource | None | ProbeError) -> None:
    guard(run, deadline, "proxy.role_allows")
    facts = proxy_facts(proxy.raw) if proxy is not None else None
    if facts is None or proxy is None:
        _record(run, check_role_allows(database, None, [], why_not="rds.found did not describe the proxy (its role)"))
        return
    cannot = _cannot(database, target)
    if cannot or not isinstance(target, RdsResource):
        _record(run, check_role_allows(database, facts, [], cannot=cannot or "no target"))
        return
    role = facts.role_arn
    verdicts = [] if role is None else [
        (action, resource, _evaluate(deps, role, action, resource, target.account or ""))
        for action, resource in _requests(database, user, facts, proxy, target)]
    _record(run, check_role_allows(database, facts, verdicts))


def _connect(engine: DbTarget, database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
             run: TargetRun, proxy: RdsResource | None, *, inspect: bool) -> tuple[Any, str]:
    blockers = failed_ids(run.results, *_BLOCKERS, *engine.fact_checks)
    if blockers:
        legs = sorted({LEG_OF[b] for b in blockers if b in LEG_OF})
        named = " and ".join(LEGS[leg] for leg in legs)
        run.record(skipped("db.connect", f"not attempted: {', '.join(blockers)} failed ({named}); the login "
                           f"through the proxy would be refused {engine.refused}", blocked_by=blockers, legs=legs))
        return None, f"{', '.join(blockers)} failed"
    host, port = effective_endpoint(database, proxy)
    connector = engine.connector(deps)
    if not host or not port or connector is None:
        run.record(errored("db.connect", "no endpoint or no driver to connect with: the policy names no host and "
                           "RDS did not describe the proxy, or the engine's driver is missing",
                           "fix rds.found first, or set host/port in the policy"))
        return None, "the endpoint is unknown"
    try:
        token = deps.tokens.token(database, user.name, host, port, proxy.resource_id if proxy else None)
    except ProbeError as exc:
        run.record(errored("db.connect", f"could not sign a token: {exc.cause}",
                           "let the canary sign (sts:AssumeRole on the signer role), then re-run", cause=exc.cause))
        return None, "no token could be signed"
    params = ConnectParams(host=host, port=port, dbname=database.dbname or engine.default_dbname, user=user.name,
                           password=token, sslrootcert=deps.ssl_root_cert,
                           connect_timeout=max(2, int(remaining_or_stop(deadline))))
    started = time.perf_counter()
    try:
        session = connector.connect(params)
    except DbConnectError as exc:
        result = engine.connect_verdict(host, port, user.name, exc, None, deps.ssl_root_cert)
        run.record(on_leg(result, leg_of_refusal(exc.message, [])))
        return None, "db.connect did not succeed"
    latency = round((time.perf_counter() - started) * 1000.0, 1)
    run.record(engine.connect_verdict(host, port, user.name, None, latency, deps.ssl_root_cert))
    try:
        return (login_facts(engine, session, user.name) if inspect else None), ""
    finally:
        session.close()
