"""One RDS Proxy target's checks (an ``auth: iam`` user of a ``proxy`` database), in order.

Leg 1 (caller to proxy): ``rds.found`` (the proxy, available), ``rds.iam_auth_enabled``,
``rds.endpoint``, ``iam.signer_allows`` and ``org.scp_allows`` on ``dbuser:prx-.../USER``.
Leg 2 (proxy to target): ``proxy.target`` (registered and healthy), ``proxy.role_allows``
(the proxy's role on the target's resource id, or the user's secret), then the user on the
target: ``db.rds_iam`` / ``db.auth_conflict`` / ``db.tier`` for PostgreSQL, ``db.iam_plugin`` /
``db.tier`` for the MySQL family, read through an administrator connection that reaches the
*target* when there is one (before the login), else on the login's own session.
Last, ``db.connect``: a ``verify-full`` login through the proxy with a token signed for the
proxy's endpoint. It is not attempted when a check of either leg already failed (it could
only add "Access denied"); when it fails, its message and details name the leg that refused.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.aws.arn import dbuser_arn as make_dbuser_arn
from chalicelib.canary.checks_db import (
    ConnectParams,
    DbConnectError,
    check_auth_conflict,
    check_connect,
    check_rds_iam,
    check_tier,
)
from chalicelib.canary.checks_iam import check_scp_allows, check_signer_allows
from chalicelib.canary.checks_mysql import check_iam_plugin, check_mysql_connect, check_mysql_tier, flavour_of
from chalicelib.canary.checks_proxy import (
    LEG_OF,
    LEGS,
    check_proxy_target,
    check_role_allows,
    leg_of_refusal,
    on_leg,
)
from chalicelib.canary.checks_rds import (
    RdsResource,
    check_endpoint,
    check_found,
    check_iam_auth_enabled,
    dbuser_arn,
    effective_endpoint,
)
from chalicelib.canary.model import CheckResult, errored, skipped
from chalicelib.errors import ProbeError
from chalicelib.iam.proxy_leg import GET_SECRET_ACTION, ProxyFacts, proxy_facts
from chalicelib.iam.rdsdb import CONNECT_ACTION
from chalicelib.policy.model import Database, DbUser

__all__ = ["run_proxy", "ProxyDeadlineError"]


class ProxyDeadlineError(Exception):
    """The target's deadline passed; the caller reports what did not finish."""


class _Run(Protocol):
    results: dict[str, CheckResult]
    current: str | None

    def record(self, result: CheckResult) -> CheckResult: ...


class _Deadline(Protocol):
    def remaining(self) -> float: ...


@dataclass(frozen=True)
class _Ctx:
    database: Database
    user: DbUser
    deps: Any  # chalicelib.canary.target.CanaryDeps
    deadline: _Deadline
    run: _Run

    def guard(self, cid: str) -> None:
        if self.deadline.remaining() <= 0:
            raise ProxyDeadlineError()
        self.run.current = cid

    def record(self, result: CheckResult) -> CheckResult:
        return self.run.record(on_leg(result, LEG_OF.get(result.id)))

    def failed(self, *ids: str) -> list[str]:
        return [i for i in ids if i in self.run.results and self.run.results[i].status == "fail"]

    @property
    def postgres(self) -> bool:
        return self.database.engine == "postgres"


def run_proxy(database: Database, user: DbUser, deps: Any, deadline: _Deadline, run: _Run) -> None:
    """Every check of a proxy target; :class:`ProxyDeadlineError` when the deadline passes."""
    ctx = _Ctx(database, user, deps, deadline, run)
    proxy = _leg_one(ctx)
    target = _describe(ctx, database.behind())
    _proxy_target(ctx, proxy)
    _role_allows(ctx, proxy, target)
    t_host, t_port = (target.host, target.port) if isinstance(target, RdsResource) else (None, None)
    admin_used = _admin_facts(ctx, t_host, t_port)
    facts, why = _connect(ctx, proxy)
    if not admin_used:
        _user_checks(ctx, facts, why or "db.connect did not succeed")


def _describe(ctx: _Ctx, database: Database | None) -> RdsResource | None | ProbeError:
    if database is None:
        return None
    try:
        described: RdsResource | None = ctx.deps.rds.describe(database)
        return described
    except ProbeError as exc:
        return exc


def _leg_one(ctx: _Ctx) -> RdsResource | None:
    database, user, deps = ctx.database, ctx.user, ctx.deps
    ctx.guard("rds.found")
    described = _describe(ctx, database)
    ctx.record(check_found(database, described))
    resource = described if isinstance(described, RdsResource) else None
    ctx.guard("rds.iam_auth_enabled")
    ctx.record(check_iam_auth_enabled(database, resource))
    ctx.guard("rds.endpoint")
    ctx.record(check_endpoint(database, resource))
    arn = dbuser_arn(database, resource, user.name) if resource else None
    principal: str | None = None
    facts: Any = None
    ctx.guard("iam.signer_allows")
    if arn is not None and resource is not None:
        try:
            principal = deps.signer.principal(database)
            facts = deps.connect.evaluate(principal, arn, account_id=resource.account or "")
        except ProbeError as exc:
            facts = exc
    ctx.record(check_signer_allows(facts, principal=principal, dbuser_arn=arn))
    ctx.guard("org.scp_allows")
    ctx.record(check_scp_allows(facts, principal=principal, dbuser_arn=arn))
    return resource


def _proxy_target(ctx: _Ctx, proxy: RdsResource | None) -> None:
    ctx.guard("proxy.target")
    if proxy is None:
        ctx.record(skipped("proxy.target", "not checked: rds.found did not describe the proxy"))
        return
    if ctx.deps.proxy is None:
        ctx.record(errored("proxy.target", "the canary has no way to list the proxy's targets",
                           "build the canary's dependencies with proxy facts (chalicelib.canary.factory)"))
        return
    try:
        targets = ctx.deps.proxy.targets(ctx.database)
    except ProbeError as exc:
        targets = exc
    ctx.record(check_proxy_target(ctx.database, targets))


def _requests(ctx: _Ctx, facts: ProxyFacts, proxy: RdsResource, target: RdsResource) -> list[tuple[str, str]]:
    """What the proxy's role must be allowed for this user: ``rds-db:connect`` on the target's
    dbuser ARN, or ``GetSecretValue`` on the user's secret (every secret when none names the user)."""
    database = ctx.database
    assert database.target is not None
    if database.target.auth == "iam":
        return [(CONNECT_ACTION, make_dbuser_arn(database.region, target.account or "", target.resource_id or "",
                                                 ctx.user.name, target.partition))]
    auth = proxy.raw.get("Auth") or []
    mine = [str(a["SecretArn"]) for a in auth if isinstance(a, dict) and a.get("UserName") == ctx.user.name
            and a.get("SecretArn")]
    return [(GET_SECRET_ACTION, arn) for arn in (mine or list(facts.secret_arns))]


def _role_allows(ctx: _Ctx, proxy: RdsResource | None, target: RdsResource | None | ProbeError) -> None:
    ctx.guard("proxy.role_allows")
    database = ctx.database
    assert database.target is not None
    facts = proxy_facts(proxy.raw) if proxy is not None else None
    what = f"{database.target.kind} '{database.target.identifier}'"
    why_not = ""
    if facts is None:
        why_not = "rds.found did not describe the proxy (its role)"
    elif isinstance(target, ProbeError):
        why_not = f"could not describe the target {what}: {target.cause}"
    elif target is None or not target.resource_id or not target.account:
        why_not = f"RDS does not describe the target {what} (its resource id)"
    if why_not or facts is None or proxy is None or not isinstance(target, RdsResource):
        ctx.record(check_role_allows(database, facts, [], why_not=why_not or "no target"))
        return
    verdicts: list[tuple[str, str, Any]] = []
    for action, resource in _requests(ctx, facts, proxy, target):
        verdict: Any
        try:
            if facts.role_arn is None:
                break
            if action == CONNECT_ACTION:
                verdict = ctx.deps.connect.evaluate(facts.role_arn, resource, account_id=target.account or "")
            elif ctx.deps.proxy is not None:
                verdict = ctx.deps.proxy.allows(facts.role_arn, action, resource)
            else:
                verdict = ProbeError("the canary has no way to read the proxy's role")
        except ProbeError as exc:
            verdict = exc
        verdicts.append((action, resource, verdict))
    ctx.record(check_role_allows(database, facts, verdicts))


# -- the user on the target ---------------------------------------------------------------------

def _user_checks(ctx: _Ctx, facts: Any, why: str = "") -> None:
    if ctx.postgres:
        ctx.record(check_rds_iam(ctx.user.name, facts, why))
        ctx.record(check_auth_conflict(ctx.user.name, facts, why))
        ctx.record(check_tier(ctx.user, facts, why))
    else:
        ctx.record(check_iam_plugin(ctx.user.name, facts, why, flavour=flavour_of(ctx.database.engine)))
        ctx.record(check_mysql_tier(ctx.user, facts, why))


def _admin_facts(ctx: _Ctx, host: str | None, port: int | None) -> bool:
    """The user's facts through an administrator connection reaching the target; False when none does."""
    admin = ctx.deps.admin if ctx.postgres else ctx.deps.mysql_admin
    if admin is None or not host or not port or ctx.failed("rds.found") or not admin.covers(host, port):
        return False
    ctx.guard("db.rds_iam" if ctx.postgres else "db.iam_plugin")
    remaining = ctx.deadline.remaining()
    if remaining <= 0:
        raise ProxyDeadlineError()
    facts: Any
    try:
        facts = (admin.role_facts(host, port, ctx.database.dbname or "postgres", ctx.user.name, remaining)
                 if ctx.postgres else admin.user_facts(ctx.user.name, remaining))
    except DbConnectError as exc:
        facts = exc
    _user_checks(ctx, facts)
    return True


_BLOCKERS = ("rds.found", "rds.iam_auth_enabled", "iam.signer_allows", "org.scp_allows", "proxy.target",
             "proxy.role_allows", "db.rds_iam", "db.auth_conflict", "db.iam_plugin")


def _connect(ctx: _Ctx, proxy: RdsResource | None) -> tuple[Any, str]:
    ctx.guard("db.connect")
    blockers = ctx.failed(*_BLOCKERS)
    if blockers:
        legs = sorted({LEG_OF[b] for b in blockers if b in LEG_OF})
        named = " and ".join(LEGS[leg] for leg in legs)
        ctx.record(skipped("db.connect", f"not attempted: {', '.join(blockers)} failed ({named}); the login "
                           "through the proxy would be refused", blocked_by=blockers, legs=legs))
        return None, f"{', '.join(blockers)} failed"
    host, port = effective_endpoint(ctx.database, proxy)
    if not host or not port:
        ctx.record(errored("db.connect", "no endpoint to connect to: the policy names no host and RDS did not "
                           "describe the proxy", "fix rds.found first, or set host/port in the policy"))
        return None, "the endpoint is unknown"
    connector = ctx.deps.db if ctx.postgres else ctx.deps.mysql_db
    if connector is None:
        ctx.record(errored("db.connect", "the canary has no connector for this engine", "install PyMySQL"))
        return None, "no driver"
    return _login(ctx, connector, proxy, host, port)


def _login(ctx: _Ctx, connector: Any, proxy: RdsResource | None, host: str, port: int) -> tuple[Any, str]:
    deps, user = ctx.deps, ctx.user
    try:
        token = deps.tokens.token(ctx.database, user.name, host, port, proxy.resource_id if proxy else None)
    except ProbeError as exc:
        ctx.record(errored("db.connect", f"could not sign a token: {exc.cause}",
                           "let the canary sign (sts:AssumeRole on the signer role), then re-run", cause=exc.cause))
        return None, "no token could be signed"
    remaining = ctx.deadline.remaining()
    if remaining <= 0:
        raise ProxyDeadlineError()
    dbname = ctx.database.dbname or ("postgres" if ctx.postgres else "")
    params = ConnectParams(host=host, port=port, dbname=dbname, user=user.name, password=token,
                           sslrootcert=deps.ssl_root_cert, connect_timeout=max(2, int(remaining)))
    check: Callable[..., CheckResult] = (
        (lambda **kw: check_connect(tls={"sslmode": "verify-full", "sslrootcert": deps.ssl_root_cert}, **kw))
        if ctx.postgres else (lambda **kw: check_mysql_connect(cafile=deps.ssl_root_cert, **kw)))
    started = time.perf_counter()
    try:
        session = connector.connect(params)
    except DbConnectError as exc:
        result = check(host=host, port=port, user=user.name, error=exc, latency_ms=None)
        leg = leg_of_refusal(exc.message, [])
        ctx.run.record(on_leg(result, leg) if leg else result)
        return None, "db.connect did not succeed"
    latency = round((time.perf_counter() - started) * 1000.0, 1)
    ctx.run.record(check(host=host, port=port, user=user.name, error=None, latency_ms=latency))
    try:
        if "db.tier" in ctx.run.results:  # the administrator's view was read already
            return None, ""
        return _session_facts(ctx, session), ""
    finally:
        session.close()


def _session_facts(ctx: _Ctx, session: Any) -> Any:
    try:
        return session.role_facts(ctx.user.name) if ctx.postgres else session.user_facts(ctx.user.name)
    except DbConnectError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a failed catalog query is an error, never a pass
        return DbConnectError("other", f"reading the user's roles failed: {type(exc).__name__}")
