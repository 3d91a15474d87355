"""One target's run as it goes: what the checks need (:class:`CanaryDeps`), the time they have
(:class:`Deadline`), the results so far (:class:`TargetRun`), and the stop when time is up.

Shared by :mod:`chalicelib.canary.target` and the per-engine database phases
(:mod:`chalicelib.canary.target_db`).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.canary.checks_auth_log import AuthErrorLog
from chalicelib.canary.checks_iam import ConnectEvaluator
from chalicelib.canary.checks_kerberos import DirectoryRoleFacts
from chalicelib.canary.checks_password import SecretFacts
from chalicelib.canary.checks_proxy import ProxyTargetFacts
from chalicelib.canary.checks_rds import RdsFacts
from chalicelib.canary.model import (
    IAM_CHECKS_BY_FAMILY,
    KERBEROS_CHECKS,
    PASSWORD_CHECKS,
    PROXY_IAM_CHECKS_BY_FAMILY,
    CheckResult,
    TargetReport,
    errored,
)
from chalicelib.engines.base import AdminInspector, ConnectParams
from chalicelib.engines.registry import family_of
from chalicelib.policy.model import Database, DbUser

__all__ = ["TokenSource", "SignerResolver", "FactsSession", "DbConnector", "CanaryDeps", "Deadline", "TargetRun",
           "TargetStop", "planned_checks", "guard", "failed_ids", "remaining_or_stop"]


class TokenSource(Protocol):
    def token(self, database: Database, db_user: str, host: str, port: int,
              resource_id: str | None) -> str:
        """A freshly signed token; :class:`ProbeError` when it cannot be signed."""


class SignerResolver(Protocol):
    def principal(self, database: Database) -> str:
        """The IAM principal whose permission signs tokens for ``database``."""


class FactsSession(Protocol):
    """What the canary asks of an open login (an engine's session, or an in-memory one)."""

    def user_facts(self, user: str) -> Any: ...

    def close(self) -> None: ...


class DbConnector(Protocol):
    def connect(self, params: ConnectParams) -> FactsSession:
        """Open a session or raise :class:`~chalicelib.engines.base.DbConnectError`."""


@dataclass
class CanaryDeps:
    rds: RdsFacts
    connect: ConnectEvaluator
    directory: DirectoryRoleFacts
    tokens: TokenSource
    #: the PostgreSQL family: logins, and an administrator's view of roles, if any
    db: DbConnector
    signer: SignerResolver
    ssl_root_cert: str | None = None
    admin: AdminInspector[Any] | None = None
    #: ``auth: password`` users: their secrets
    secrets: SecretFacts | None = None
    #: the MySQL family: logins, and an administrator's view of users, if any
    mysql_db: DbConnector | None = None
    mysql_admin: AdminInspector[Any] | None = None
    #: the databases' iam-db-auth-error logs
    auth_log: AuthErrorLog | None = None
    #: RDS Proxy databases: their registered targets and the proxy role's policies
    proxy: ProxyTargetFacts | None = None
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


def planned_checks(user: DbUser, engine: str = "postgres", *, proxy: bool = False) -> tuple[str, ...]:
    """The checks of one target, in report order (``proxy``: the database is an RDS Proxy)."""
    if proxy and user.auth == "iam":
        return PROXY_IAM_CHECKS_BY_FAMILY[family_of(engine)]
    if user.auth == "kerberos":
        return KERBEROS_CHECKS
    if user.auth == "iam":
        return IAM_CHECKS_BY_FAMILY[family_of(engine)]
    if user.auth == "password":
        return PASSWORD_CHECKS
    return ("rds.found", "rds.endpoint", "db.tier")


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
        planned = planned_checks(self.user, self.database.engine, proxy=self.database.target is not None)
        for cid in planned:
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
        checks = tuple(results[c] for c in planned)
        return TargetReport(self.database.name, self.user.name, checks, self.user.auth)


class TargetStop(Exception):  # a signal, not an error: the target's time is up
    """The target's deadline passed: stop, and report what did not finish."""


def guard(run: TargetRun, deadline: Deadline, cid: str) -> None:
    """Before check ``cid``: stop when time is up, else record that ``cid`` is running."""
    if deadline.expired:
        raise TargetStop()
    with run.lock:
        run.current = cid


def remaining_or_stop(deadline: Deadline) -> float:
    remaining = deadline.remaining()
    if remaining <= 0:
        raise TargetStop()
    return remaining


def failed_ids(results: dict[str, CheckResult], *ids: str) -> list[str]:
    return [i for i in ids if i in results and results[i].status == "fail"]
