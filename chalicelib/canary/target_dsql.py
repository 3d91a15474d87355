"""The canary for a role of an Aurora DSQL cluster.

``dsql.found`` (the cluster exists and is ACTIVE, read with ``GetCluster`` through the reader
role when it is in another account), ``iam.signer_allows`` and ``org.scp_allows`` (the signer
may ``dsql:DbConnect``, ``dsql:DbConnectAdmin`` for ``admin``, on the cluster ARN), ``db.connect``
(a real ``verify-full`` login with a fresh token) and ``dsql.role_mapping``: a custom role must
be mapped with ``AWS IAM GRANT`` to the signing role, and the mapping must still name that role's
current identity. ``sys.iam_pg_role_mappings`` shows the role ARN but not the role's unique id, so
a role that was deleted and created again under the same name looks mapped while DSQL refuses
its logins (SQLSTATE 28000): a refused login with the mapping present and IAM allowing the action
is diagnosed as exactly that, and the fix is the grant to run again.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.aws.arn import dsql_cluster_arn, iam_principal_of
from chalicelib.aws.dsql import DsqlCluster, get_cluster
from chalicelib.aws.errors import aws_error
from chalicelib.canary.checks_db import check_connect
from chalicelib.canary.checks_iam import check_scp_allows, check_signer_allows
from chalicelib.canary.model import CheckResult, errored, failed, passed, skipped
from chalicelib.canary.target_run import CanaryDeps, Deadline, TargetRun, guard
from chalicelib.engines.base import ConnectParams, DbConnectError
from chalicelib.engines.dsql import DsqlEngine
from chalicelib.engines.registry import engine_for
from chalicelib.errors import ProbeError
from chalicelib.policy.model import DSQL_ADMIN, Database, DbUser

__all__ = ["DsqlCanaryDeps", "DsqlClusterFacts", "EngineMappings", "run_dsql", "check_found",
           "check_role_mapping", "grant_statement", "in_dsql_words"]


class DsqlNotFoundError(Exception):
    """DSQL has no cluster by that id (in the account read)."""


@dataclass
class DsqlCanaryDeps:
    """``cluster(database)`` reads the cluster (:class:`DsqlNotFoundError`, :class:`ProbeError`);
    ``mappings(params, role)`` logs in and reads the role's mapped ARNs (:class:`DbConnectError`);
    ``ssl_root_cert``: ``system`` (DSQL's public CA) unless a bundle is configured."""

    cluster: Callable[[Database], DsqlCluster]
    mappings: Callable[[ConnectParams, str], list[str]]
    ssl_root_cert: str = "system"


class DsqlClusterFacts:
    """``GetCluster`` through ``client_for(database)`` (the reader role's client when foreign)."""

    def __init__(self, client_for: Callable[[Database], Any]) -> None:
        self._client_for = client_for

    def __call__(self, database: Database) -> DsqlCluster:
        try:
            return get_cluster(self._client_for(database), database.identifier, database.region)
        except (KeyError, TypeError) as exc:
            raise ProbeError(f"dsql GetCluster gave a malformed answer ({type(exc).__name__})",
                             service="dsql") from None
        except ProbeError:
            raise
        except Exception as exc:
            error = aws_error(exc)
            if error is None:
                raise
            if error.not_found:
                raise DsqlNotFoundError(database.identifier) from None
            raise ProbeError(f"dsql GetCluster failed: {error.code}", service="dsql", code=error.code) from None


class EngineMappings:
    """A real login through the DSQL engine (verify-full), then the role's mapped ARNs."""

    def __call__(self, params: ConnectParams, role: str) -> list[str]:
        engine = engine_for("dsql")
        if not isinstance(engine, DsqlEngine):  # pragma: no cover - the registry's promise
            raise TypeError("the dsql engine is not DsqlEngine")
        session = engine.connect(params)
        try:
            return engine.role_mappings(session, role)
        finally:
            session.close()


def grant_statement(role: str, arn: str) -> str:
    return f"AWS IAM GRANT {role} TO '{arn}'"


def check_found(database: Database, cluster: DsqlCluster | DsqlNotFoundError | ProbeError) -> CheckResult:
    cid = "dsql.found"
    where = f"'{database.identifier}' in {database.region}"
    if isinstance(cluster, ProbeError):
        return errored(cid, f"could not read DSQL cluster {where}: {cluster.cause}",
                       "let the canary call dsql:GetCluster on the cluster (through the reader role when it "
                       "is in another account), then re-run", cause=cluster.cause)
    if isinstance(cluster, DsqlNotFoundError):
        return failed(cid, f"Aurora DSQL has no cluster {where}",
                      "fix 'cluster' (the 26-character id) or 'region' in the policy, or create the cluster",
                      cluster=database.identifier)
    if not cluster.active:
        return failed(cid, f"DSQL cluster {where} is {cluster.status}, not ACTIVE: it takes no logins",
                      "wait for it to become ACTIVE, or point the policy at a live cluster",
                      status=cluster.status, arn=cluster.arn)
    return passed(cid, f"DSQL cluster {where} is ACTIVE ({cluster.arn})", arn=cluster.arn, status=cluster.status)


def in_dsql_words(result: CheckResult, action: str) -> CheckResult:
    """The RDS check's verdict, in DSQL's action and resource words."""
    def words(text: str) -> str:
        return (text.replace("rds-db:connect", action).replace("dbuser ARN", "cluster ARN")
                .replace("the dbuser ARN is unknown until rds.found describes the resource (its resource id)",
                         "the cluster ARN is unknown until dsql.found reads the cluster"))
    return replace(result, message=words(result.message), fix=words(result.fix))


def check_role_mapping(role: str, signer_arn: str, *, mapped: list[str] | None, login_refused: bool,
                       iam_allows: bool, reason: str = "") -> CheckResult:
    """``mapped``: the ARNs the role is mapped to (None: could not be read)."""
    cid = "dsql.role_mapping"
    grant = grant_statement(role, signer_arn)
    details = {"role": role, "signer_role": signer_arn, "mapped_to": mapped}
    if mapped is not None and signer_arn not in mapped:
        return failed(cid, f"database role '{role}' is not mapped to the signing role {signer_arn}"
                      + (f" (it is mapped to: {', '.join(mapped)})" if mapped else ""),
                      f"as admin, run: {grant}", **details)
    if login_refused and iam_allows:
        known = "" if mapped is None else f"the mapping to {signer_arn} is present and "
        return failed(cid, f"database role '{role}' refused the signing role's token although {known}IAM "
                      f"allows the action: the mapping names a deleted or recreated role (its old unique id), "
                      f"not the current {signer_arn}",
                      f"as admin, map the role again: AWS IAM REVOKE {role} FROM '{signer_arn}'; {grant}",
                      **details)
    if mapped is None:
        return errored(cid, f"could not read the mappings of '{role}': {reason or 'no login'}",
                       f"fix db.connect first; the role needs: {grant}", **details)
    return passed(cid, f"database role '{role}' is mapped to the signing role {signer_arn}", **details)


def run_dsql(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun) -> None:
    """Every DSQL check for (database, user), recorded on ``run``."""
    dsql = deps.dsql
    if dsql is None:
        run.record(errored("dsql.found", "this canary was built without an Aurora DSQL reader"))
        return
    guard(run, deadline, "dsql.found")
    try:
        cluster: DsqlCluster | DsqlNotFoundError | ProbeError = dsql.cluster(database)
    except (DsqlNotFoundError, ProbeError) as exc:
        cluster = exc
    run.record(check_found(database, cluster))
    account = cluster.account if isinstance(cluster, DsqlCluster) else database.account
    arn = (cluster.arn if isinstance(cluster, DsqlCluster) else
           dsql_cluster_arn(database.region, account, database.identifier, database.partition) if account else None)
    action = f"dsql:{database.dsql_action(user.name)}"

    guard(run, deadline, "iam.signer_allows")
    principal: str | None = None
    facts: Any = None
    if arn is not None:
        try:
            principal = deps.signer.principal(database)
            facts = deps.connect.evaluate(principal, arn, account_id=arn.split(":")[4], action=action)
        except ProbeError as exc:
            facts = exc
    signer = in_dsql_words(check_signer_allows(facts, principal=principal, dbuser_arn=arn), action)
    run.record(signer)
    guard(run, deadline, "org.scp_allows")
    scp = in_dsql_words(check_scp_allows(facts, principal=principal, dbuser_arn=arn), action)
    run.record(scp)

    guard(run, deadline, "db.connect")
    mapped, error = _login(database, user, deps, deadline, run, found=run.results["dsql.found"].status == "pass")
    guard(run, deadline, "dsql.role_mapping")
    if user.name == DSQL_ADMIN:
        run.record(skipped("dsql.role_mapping", "admin is signed with DbConnectAdmin and needs no mapping"))
        return
    signer_arn = iam_principal_of(principal or deps.signer.principal(database))
    refused = error is not None and error.kind == "auth"
    iam_allows = signer.status in ("pass", "warn") and scp.status in ("pass", "warn")
    if refused and iam_allows and DSQL_ADMIN in database.users:
        mapped = _mappings_as_admin(database, user, deps, deadline)
    run.record(check_role_mapping(user.name, signer_arn, mapped=mapped, login_refused=refused,
                                  iam_allows=iam_allows, reason=error.message if error else ""))


def _params(database: Database, user: str, token: str, deps: Any, deadline: Any) -> ConnectParams:
    return ConnectParams(host=database.host or "", port=database.port or 5432, dbname=database.dbname or "postgres",
                         user=user, password=token, sslrootcert=deps.dsql.ssl_root_cert,
                         connect_timeout=max(2, int(deadline.remaining())))


def _login(database: Database, user: DbUser, deps: Any, deadline: Any, run: Any,
           *, found: bool) -> tuple[list[str] | None, DbConnectError | None]:
    host, port = database.host or "", database.port or 5432
    tls = {"sslmode": "verify-full", "sslrootcert": deps.dsql.ssl_root_cert}
    if not found:
        run.record(skipped("db.connect", "not attempted: dsql.found did not pass", blocked_by=["dsql.found"]))
        return None, DbConnectError("other", "dsql.found did not pass")
    try:
        token = deps.tokens.token(database, user.name, host, port, None)
    except ProbeError as exc:
        run.record(errored("db.connect", f"could not sign a token: {exc.cause}",
                           "let the canary sign (sts:AssumeRole on the signer role, valid credentials), then re-run",
                           host=host, port=port, cause=exc.cause))
        return None, DbConnectError("other", "no token could be signed")
    started = time.perf_counter()
    try:
        mapped = deps.dsql.mappings(_params(database, user.name, token, deps, deadline), user.name)
    except DbConnectError as exc:
        run.record(check_connect(host=host, port=port, user=user.name, error=exc, latency_ms=None, tls=tls))
        return None, exc
    latency = round((time.perf_counter() - started) * 1000.0, 1)
    run.record(check_connect(host=host, port=port, user=user.name, error=None, latency_ms=latency, tls=tls))
    return mapped, None


def _mappings_as_admin(database: Database, user: DbUser, deps: Any, deadline: Any) -> list[str] | None:
    """The role's mappings read as ``admin`` (when the canary may sign for it), else None."""
    try:
        token = deps.tokens.token(database, DSQL_ADMIN, database.host or "", database.port or 5432, None)
        return list(deps.dsql.mappings(_params(database, DSQL_ADMIN, token, deps, deadline), user.name))
    except (ProbeError, DbConnectError):
        return None
