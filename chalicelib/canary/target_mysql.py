"""The canary's database phase for the MySQL family (see :mod:`.target_db`): the user identified
with AWSAuthenticationPlugin, the tier, a token login over TLS ``VERIFY_IDENTITY``."""
from __future__ import annotations

from typing import Any

from chalicelib.canary.checks_mysql import check_iam_plugin, check_mysql_connect, check_mysql_tier, flavour_of
from chalicelib.canary.checks_password import check_not_iam_mysql
from chalicelib.canary.model import CheckResult
from chalicelib.canary.target_run import CanaryDeps, DbConnector
from chalicelib.engines.base import AdminInspector, DbConnectError
from chalicelib.policy.model import Database, DbUser

__all__ = ["MysqlTarget"]


class MysqlTarget:
    family: str = "mysql"
    default_dbname: str = ""
    fact_checks: tuple[str, ...] = ("db.iam_plugin",)
    refused: str = "(1045 Access denied, or 1524 when IAM authentication is off)"
    kerberos: bool = False

    def connector(self, deps: CanaryDeps) -> DbConnector | None:
        return deps.mysql_db

    def admin(self, deps: CanaryDeps) -> AdminInspector[Any] | None:
        return deps.mysql_admin

    def iam_verdicts(self, database: Database, user: DbUser, facts: Any, why: str) -> list[CheckResult]:
        return [check_iam_plugin(user.name, facts, why, flavour=flavour_of(database.engine)),
                check_mysql_tier(user, facts, why)]

    def password_verdicts(self, login_user: DbUser, facts: Any, why: str) -> list[CheckResult]:
        return [check_not_iam_mysql(login_user.name, facts, why), check_mysql_tier(login_user, facts, why)]

    def connect_verdict(self, host: str, port: int, user: str, error: DbConnectError | None,
                        latency_ms: float | None, cafile: str | None) -> CheckResult:
        return check_mysql_connect(host=host, port=port, user=user, error=error, latency_ms=latency_ms, cafile=cafile)

    def facts_failed(self, exc: Exception) -> DbConnectError:
        return DbConnectError("other", f"reading the user's grants failed: {type(exc).__name__}")
