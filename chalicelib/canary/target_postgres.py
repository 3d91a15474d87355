"""The canary's database phase for the PostgreSQL family (see :mod:`.target_db`): membership in
``rds_iam`` and not ``rds_ad``, the tier, a token login over TLS verify-full."""
from __future__ import annotations

from typing import Any

from chalicelib.canary.checks_db import check_auth_conflict, check_connect, check_rds_iam, check_tier
from chalicelib.canary.checks_password import check_not_iam
from chalicelib.canary.model import CheckResult
from chalicelib.canary.target_run import CanaryDeps, DbConnector
from chalicelib.engines.base import AdminInspector, DbConnectError
from chalicelib.policy.model import Database, DbUser

__all__ = ["PostgresTarget"]


class PostgresTarget:
    family: str = "postgres"
    default_dbname: str = "postgres"
    fact_checks: tuple[str, ...] = ("db.rds_iam", "db.auth_conflict")
    refused: str = "(\"PAM authentication failed for user\")"
    kerberos: bool = True

    def connector(self, deps: CanaryDeps) -> DbConnector | None:
        return deps.db

    def admin(self, deps: CanaryDeps) -> AdminInspector[Any] | None:
        return deps.admin

    def iam_verdicts(self, database: Database, user: DbUser, facts: Any, why: str) -> list[CheckResult]:
        return [check_rds_iam(user.name, facts, why), check_auth_conflict(user.name, facts, why),
                check_tier(user, facts, why)]

    def password_verdicts(self, login_user: DbUser, facts: Any, why: str) -> list[CheckResult]:
        return [check_not_iam(login_user.name, facts, why), check_tier(login_user, facts, why)]

    def connect_verdict(self, host: str, port: int, user: str, error: DbConnectError | None,
                        latency_ms: float | None, cafile: str | None) -> CheckResult:
        return check_connect(host=host, port=port, user=user, error=error, latency_ms=latency_ms,
                             tls={"sslmode": "verify-full", "sslrootcert": cafile})

    def facts_failed(self, exc: Exception) -> DbConnectError:
        return DbConnectError("other", f"catalog query failed: {type(exc).__name__}")
