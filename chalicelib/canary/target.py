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

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.canary.checks_auth_log import check_auth_errors
from chalicelib.canary.checks_db import (
    ConnectParams,
    DbConnectError,
    DbConnector,
    RoleFacts,
    check_auth_conflict,
    check_connect,
    check_rds_iam,
    check_tier,
)
from chalicelib.canary.checks_iam import ConnectEvaluator, check_scp_allows, check_signer_allows
from chalicelib.canary.checks_kerberos import DirectoryRoleFacts, check_directory_role, check_rds_ad
from chalicelib.canary.checks_rds import (
    RdsFacts,
    RdsResource,
    check_domain_joined,
    check_endpoint,
    check_found,
    check_iam_auth_enabled,
    dbuser_arn,
    effective_endpoint,
)
from chalicelib.canary.model import (
    DSQL_CHECKS,
    IAM_CHECKS,
    KERBEROS_CHECKS,
    MYSQL_IAM_CHECKS,
    CheckResult,
    TargetReport,
    errored,
    skipped,
)
from chalicelib.canary.target_dsql import run_dsql
from chalicelib.errors import ProbeError, RdsvendError
from chalicelib.policy.model import Database, DbUser

__all__ = [
    "TokenSource",
    "SignerResolver",
    "AdminInspector",
    "CanaryDeps",
    "Deadline",
    "TargetRun",
    "run_target",
    "planned_checks",
]


class TokenSource(Protocol):
    def token(self, database: Database, db_user: str, host: str, port: int,
              resource_id: str | None) -> str:
        """A freshly signed token; :class:`ProbeError` when it cannot be signed."""


class SignerResolver(Protocol):
    def principal(self, database: Database) -> str:
        """The IAM principal whose permission signs tokens for ``database``."""


class AdminInspector(Protocol):
    def covers(self, host: str | None, port: int | None) -> bool:
        """Does the administrator connection reach this server?"""

    def role_facts(self, host: str, port: int, dbname: str, role: str, timeout: float) -> RoleFacts:
        """The catalogs' view of ``role``; :class:`DbConnectError` if the connection fails."""


@dataclass
class CanaryDeps:
    rds: RdsFacts
    connect: ConnectEvaluator
    directory: DirectoryRoleFacts
    tokens: TokenSource
    db: DbConnector
    signer: SignerResolver
    ssl_root_cert: str | None = None
    admin: AdminInspector | None = None
    #: ``auth: password`` users: their secrets (:class:`chalicelib.canary.checks_password.SecretFacts`)
    secrets: Any = None
    #: the MySQL family: the connector (PyMySQL) and an administrator's view of users, if any
    mysql_db: Any = None
    mysql_admin: Any = None
    #: the databases' iam-db-auth-error logs (:class:`chalicelib.canary.checks_auth_log.AuthErrorLog`)
    auth_log: Any = None
    #: Aurora DSQL clusters (:class:`chalicelib.canary.target_dsql.DsqlCanaryDeps`)
    dsql: Any = None


@dataclass
class Deadline:
    at: float  # time.monotonic() value
    seconds: float = 0.0  # the budget it was made with (for messages)

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass
class TargetRun:
    """Results recorded as they come, so a target cut off by its deadline keeps what it had."""

    database: Database
    user: DbUser
    results: dict[str, CheckResult] = field(default_factory=dict)
    current: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, result: CheckResult) -> CheckResult:
        with self.lock:
            self.results[result.id] = result
        return result

    def report(self, *, timed_out: float | None = None) -> TargetReport:
        """The report so far; with ``timed_out`` every check not finished becomes an error."""
        with self.lock:
            results = dict(self.results)
            current = self.current
        for cid in planned_checks(self.user, self.database.engine):
            if cid in results:
                continue
            if timed_out is not None:
                what = "did not finish" if cid == current else "did not run"
                results[cid] = errored(cid, f"{what} within the target's timeout ({timed_out:g} s)",
                                       "find what hangs (an endpoint that accepts and never answers, "
                                       "a stalled AWS API call), or raise canary.timeout_seconds",
                                       timeout_seconds=timed_out)
            else:
                results[cid] = errored(cid, "did not run")
        checks = tuple(results[c] for c in planned_checks(self.user, self.database.engine))
        return TargetReport(self.database.name, self.user.name, checks, self.user.auth)


def planned_checks(user: DbUser, engine: str = "postgres") -> tuple[str, ...]:
    if engine == "dsql":
        return DSQL_CHECKS
    if user.auth == "kerberos":
        return KERBEROS_CHECKS
    if user.auth == "iam":
        return IAM_CHECKS if engine == "postgres" else MYSQL_IAM_CHECKS
    if user.auth == "password":
        from chalicelib.canary.model import PASSWORD_CHECKS

        return PASSWORD_CHECKS
    return ("rds.found", "rds.endpoint", "db.tier")


class _Stop(Exception):
    pass


def _guard(run: TargetRun, deadline: Deadline, cid: str) -> None:
    if deadline.expired:
        raise _Stop()
    with run.lock:
        run.current = cid


def _describe(deps: CanaryDeps, database: Database) -> RdsResource | None | ProbeError:
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


def _failed(results: dict[str, CheckResult], *ids: str) -> list[str]:
    return [i for i in ids if i in results and results[i].status == "fail"]


def run_target(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
               run: TargetRun | None = None) -> TargetReport:
    """Every check for (database, user); never raises for anything a target can do."""
    run = run or TargetRun(database, user)
    try:
        _run(database, user, deps, deadline, run)
    except _Stop:
        return run.report(timed_out=deadline.seconds)
    return run.report()


def _run(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun) -> None:
    r = run.results
    if database.is_dsql:
        if deps.dsql is None:
            run.record(errored("dsql.found", "this canary was built without an Aurora DSQL reader"))
            return
        run_dsql(database, user, deps, deadline, run, _guard)
        return
    _guard(run, deadline, "rds.found")
    described = _describe(deps, database)
    run.record(check_found(database, described, None if isinstance(described, RdsResource)
                           else _searched(deps, database)))
    resource = described if isinstance(described, RdsResource) else None
    rds_down = _failed(r, "rds.found")

    if user.auth == "iam":
        _guard(run, deadline, "rds.iam_auth_enabled")
        run.record(check_iam_auth_enabled(database, resource))
    elif user.auth == "kerberos":
        _guard(run, deadline, "rds.domain_joined")
        run.record(check_domain_joined(database, resource))
    _guard(run, deadline, "rds.endpoint")
    run.record(check_endpoint(database, resource))
    host, port = effective_endpoint(database, resource)
    dbname = database.dbname or ("postgres" if database.engine == "postgres" else "")

    if user.auth == "kerberos":
        _kerberos(database, user, deps, deadline, run, resource, host, port, dbname, rds_down)
        return
    if user.auth == "password":
        from chalicelib.canary.target_password import run_password

        run_password(database, user, deps, deadline, run, dbname, rds_down)
        return
    if user.auth != "iam":
        _guard(run, deadline, "db.tier")
        facts = _admin_facts(deps, deadline, host, port, dbname, user.name) if not rds_down else None
        run.record(check_tier(user, facts, "password users are inspected only with an admin DSN"))
        return

    # --- IAM and SCPs
    arn = dbuser_arn(database, resource, user.name) if resource else None
    principal: str | None = None
    facts_or_error: Any = None
    _guard(run, deadline, "iam.signer_allows")
    if arn is not None and resource is not None:
        try:
            principal = deps.signer.principal(database)
            facts_or_error = deps.connect.evaluate(principal, arn, account_id=resource.account or "")
        except ProbeError as exc:
            facts_or_error = exc
    run.record(check_signer_allows(facts_or_error, principal=principal, dbuser_arn=arn))
    _guard(run, deadline, "org.scp_allows")
    run.record(check_scp_allows(facts_or_error, principal=principal, dbuser_arn=arn))
    _guard(run, deadline, "rds.auth_errors")
    run.record(check_auth_errors(database, user.name, deps.auth_log))

    if database.engine != "postgres":  # the MySQL family
        from chalicelib.canary.target_mysql import run_mysql_db_checks

        run_mysql_db_checks(database, user, deps, deadline, run, resource, host, port, rds_down)
        return

    # --- Role checks through the admin connection, before the login
    admin_used = False
    if not rds_down and deps.admin is not None and deps.admin.covers(host, port) and host and port:
        _guard(run, deadline, "db.rds_iam")
        facts = _admin_facts(deps, deadline, host, port, dbname, user.name)
        admin_used = True
        run.record(check_rds_iam(user.name, facts))
        run.record(check_auth_conflict(user.name, facts))
        run.record(check_tier(user, facts))

    # --- The login itself
    _guard(run, deadline, "db.connect")
    blockers = _failed(r, "rds.found", "rds.iam_auth_enabled", "iam.signer_allows", "org.scp_allows",
                       "db.rds_iam", "db.auth_conflict")
    session_facts: RoleFacts | DbConnectError | None = None
    why = ""
    if blockers:
        why = f"{', '.join(blockers)} failed"
        run.record(skipped("db.connect", f"not attempted: {why}; the token would be refused "
                           "(\"PAM authentication failed for user\")", blocked_by=blockers))
    elif not host or not port:
        why = "the endpoint is unknown"
        run.record(errored("db.connect", "no endpoint to connect to: the policy names no host and RDS "
                           "did not describe one", "fix rds.found first, or set host/port in the policy"))
    else:
        session_facts, why = _login(database, user, deps, deadline, run, resource, host, port, dbname,
                                    inspect=not admin_used)

    if not admin_used:
        reason = why or "db.connect did not succeed"
        run.record(check_rds_iam(user.name, session_facts, reason))
        run.record(check_auth_conflict(user.name, session_facts, reason))
        run.record(check_tier(user, session_facts, reason))


def _tls(deps: CanaryDeps) -> dict[str, Any]:
    return {"sslmode": "verify-full", "sslrootcert": deps.ssl_root_cert}


def _login(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
           resource: RdsResource | None, host: str, port: int, dbname: str,
           *, inspect: bool) -> tuple[RoleFacts | DbConnectError | None, str]:
    try:
        token = deps.tokens.token(database, user.name, host, port,
                                  resource.resource_id if resource else None)
    except ProbeError as exc:
        run.record(errored("db.connect", f"could not sign a token: {exc.cause}",
                           "let the canary sign (sts:AssumeRole on the signer role, valid "
                           "credentials), then re-run", host=host, port=port, cause=exc.cause))
        return None, "no token could be signed"
    remaining = deadline.remaining()
    if remaining <= 0:
        raise _Stop()
    params = ConnectParams(host=host, port=port, dbname=dbname, user=user.name, password=token,
                           sslrootcert=deps.ssl_root_cert,
                           connect_timeout=max(2, int(remaining)))
    started = time.perf_counter()
    try:
        session = deps.db.connect(params)
    except DbConnectError as exc:
        run.record(check_connect(host=host, port=port, user=user.name, error=exc, latency_ms=None,
                                 tls=_tls(deps)))
        return None, "db.connect did not succeed"
    latency = round((time.perf_counter() - started) * 1000.0, 1)
    run.record(check_connect(host=host, port=port, user=user.name, error=None, latency_ms=latency,
                             tls=_tls(deps)))
    try:
        if not inspect:
            return None, ""
        try:
            return session.role_facts(user.name), ""
        except DbConnectError as exc:
            return exc, ""
        except Exception as exc:  # noqa: BLE001 - a catalog query failing is an error, not a pass
            return DbConnectError("other", f"catalog query failed: {type(exc).__name__}"), ""
    finally:
        session.close()


def _admin_facts(deps: CanaryDeps, deadline: Deadline, host: str | None, port: int | None,
                 dbname: str, role: str) -> RoleFacts | DbConnectError | None:
    if deps.admin is None or not host or not port or not deps.admin.covers(host, port):
        return None
    remaining = deadline.remaining()
    if remaining <= 0:
        raise _Stop()
    try:
        return deps.admin.role_facts(host, port, dbname, role, remaining)
    except DbConnectError as exc:
        return exc


def _kerberos(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
              resource: RdsResource | None, host: str | None, port: int | None, dbname: str,
              rds_down: list[str]) -> None:
    _guard(run, deadline, "iam.directory_role")
    role: Any = None
    memberships = [d for d in (resource.domains if resource else ()) if d.iam_role_name]
    if memberships:
        try:
            role = deps.directory.describe(memberships[0].iam_role_name or "",
                                           account=resource.account if resource else None)
        except ProbeError as exc:
            role = exc
    run.record(check_directory_role(resource, role))

    _guard(run, deadline, "db.rds_ad")
    facts: RoleFacts | DbConnectError | None = None
    why = ""
    if rds_down:
        why = "rds.found failed"
    elif database.engine != "postgres":
        why = f"the database checks support PostgreSQL, not {database.engine}"
    elif not host or not port:
        why = "the endpoint is unknown"
    elif deps.admin is not None and deps.admin.covers(host, port):
        facts = _admin_facts(deps, deadline, host, port, dbname, user.name)
    else:
        facts, why = _sibling_facts(database, user, deps, deadline, resource, host, port, dbname)
    run.record(check_rds_ad(user.name, facts, why))
    run.record(check_tier(user, facts, why))


def _sibling_facts(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline,
                   resource: RdsResource | None, host: str, port: int,
                   dbname: str) -> tuple[RoleFacts | DbConnectError | None, str]:
    """Read a Kerberos user's roles through an ``auth: iam`` user's token connection."""
    sibling = next((u for u in database.users.values() if u.auth == "iam"), None)
    if sibling is None:
        return None, ("no admin DSN reaches this database and it has no auth: iam user to read the "
                      "catalogs as (set RDSVEND_CANARY_ADMIN_DSN)")
    try:
        token = deps.tokens.token(database, sibling.name, host, port,
                                  resource.resource_id if resource else None)
    except ProbeError as exc:
        return None, f"could not sign a token for {sibling.name} to read the catalogs: {exc.cause}"
    remaining = deadline.remaining()
    if remaining <= 0:
        raise _Stop()
    params = ConnectParams(host=host, port=port, dbname=dbname, user=sibling.name, password=token,
                           sslrootcert=deps.ssl_root_cert, connect_timeout=max(2, int(remaining)))
    try:
        session = deps.db.connect(params)
    except DbConnectError as exc:
        return None, f"could not read the catalogs as {sibling.name}: {exc.message}"
    try:
        return session.role_facts(user.name), ""
    except DbConnectError as exc:
        return exc, ""
    finally:
        session.close()


def crash_report(database: Database, user: DbUser, exc: BaseException) -> TargetReport:
    """A target whose checks raised something unexpected: every check is an error."""
    kind = type(exc).__name__
    detail = str(exc)[:200] if isinstance(exc, RdsvendError) else ""
    checks = tuple(errored(cid, f"internal error while checking: {kind}" + (f": {detail}" if detail else ""),
                           "report this to the rdsvend maintainers with the canary's log line")
                   for cid in planned_checks(user, database.engine))
    return TargetReport(database.name, user.name, checks, user.auth)
