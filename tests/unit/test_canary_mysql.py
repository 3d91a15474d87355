"""MySQL-family canary verdicts from what MySQL and MariaDB print (SHOW CREATE USER, SHOW GRANTS)."""
from __future__ import annotations

import pymysql
import pytest

from chalicelib.canary.checks_mysql import (
    check_iam_plugin,
    check_mysql_connect,
    check_mysql_tier,
    iam_plugin_sql,
)
from chalicelib.engines.base import DbConnectError
from chalicelib.engines.mysql import classify_mysql_error
from chalicelib.engines.mysql_grants import facts_from, parse_plugins
from chalicelib.policy.model import DbUser

SERVICE_USER = DbUser("shop_app", "iam", "service-user")
ADMIN = DbUser("shop_owner", "iam", "service-admin")


@pytest.mark.parametrize("line,plugins", [
    ("CREATE USER `shop_app`@`%` IDENTIFIED WITH 'AWSAuthenticationPlugin' AS 'RDS' REQUIRE NONE",
     ("AWSAuthenticationPlugin",)),
    ("CREATE USER `shop_app`@`%` IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS'", ("AWSAuthenticationPlugin",)),
    ("CREATE USER `shop_app`@`%` IDENTIFIED VIA mysql_native_password USING '*AB' OR AWSAuthenticationPlugin "
     "USING 'RDS'", ("mysql_native_password", "AWSAuthenticationPlugin")),
    ("CREATE USER `shop_app`@`%` IDENTIFIED BY PASSWORD '*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29'", ()),
    ("CREATE USER 'x'@'%' IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$...' REQUIRE SSL",
     ("caching_sha2_password",)),
])
def test_plugins_from_show_create_user(line: str, plugins: tuple[str, ...]) -> None:
    assert parse_plugins(line) == plugins


def test_iam_plugin_passes_fails_and_names_the_fix() -> None:
    iam = facts_from("shop_app", "CREATE USER `shop_app`@`%` IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS'", [])
    assert check_iam_plugin("shop_app", iam).status == "pass"
    pw = facts_from("shop_app", "CREATE USER `shop_app`@`%` IDENTIFIED BY PASSWORD '*94BD'", [])
    verdict = check_iam_plugin("shop_app", pw, flavour="mariadb")
    assert verdict.status == "fail" and "1045" in verdict.message
    assert verdict.fix == "ALTER USER 'shop_app'@'%' IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS';"
    missing = check_iam_plugin("shop_app", facts_from("shop_app", None, []))
    assert missing.status == "fail" and missing.fix.startswith("CREATE USER 'shop_app'@'%' IDENTIFIED WITH")
    assert check_iam_plugin("shop_app", None, "db.connect failed").status == "skip"
    assert check_iam_plugin("shop_app", DbConnectError("auth", "denied")).status == "error"


def test_hostile_user_names_are_quoted_in_fixes() -> None:
    assert iam_plugin_sql("o'brien\\") == "ALTER USER 'o\\'brien\\\\'@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS';"


GRANTS_OK = ["GRANT USAGE ON *.* TO `shop_app`@`%` IDENTIFIED VIA mysql_native_password USING '*AB' OR "
             "AWSAuthenticationPlugin USING 'RDS'",
             "GRANT SELECT, INSERT, UPDATE ON `shop`.`items` TO `shop_app`@`%`"]


@pytest.mark.parametrize("extra,problem,fix", [
    ("GRANT SELECT ON `shop`.`items` TO `shop_app`@`%` WITH GRANT OPTION", "GRANT OPTION on `shop`.`items`",
     "REVOKE GRANT OPTION ON `shop`.`items` FROM 'shop_app'@'%';"),
    ("GRANT SUPER ON *.* TO `shop_app`@`%`", "has SUPER", "REVOKE SUPER ON *.*"),
    ("GRANT CREATE USER, RELOAD ON *.* TO `shop_app`@`%`", "CREATE USER", "REVOKE CREATE USER ON *.*"),
    ("GRANT ALL PRIVILEGES ON *.* TO `shop_app`@`%`", "ALL PRIVILEGES on *.*", "REVOKE ALL PRIVILEGES ON *.*"),
])
def test_service_user_tier(extra: str, problem: str, fix: str) -> None:
    assert check_mysql_tier(SERVICE_USER, facts_from("shop_app", "CREATE USER x", GRANTS_OK)).status == "pass"
    verdict = check_mysql_tier(SERVICE_USER, facts_from("shop_app", "CREATE USER x", [*GRANTS_OK, extra]))
    assert verdict.status == "fail" and problem in verdict.message and fix in verdict.fix
    assert not any("'*AB'" in g for g in verdict.details["grants"])  # no password hash in the report


def test_service_admin_may_create_users_and_grant_but_not_be_super() -> None:
    grants = [*GRANTS_OK, "GRANT CREATE USER ON *.* TO `o`@`%` WITH GRANT OPTION"]
    assert check_mysql_tier(ADMIN, facts_from("o", "CREATE USER x", grants)).status == "pass"
    grants.append("GRANT SUPER ON *.* TO `o`@`%`")
    assert check_mysql_tier(ADMIN, facts_from("o", "CREATE USER x", grants)).status == "fail"


def test_column_privileges_do_not_confuse_the_parser() -> None:
    grants = ["GRANT SELECT (`a`, `b`), UPDATE (`a`) ON `shop`.`items` TO `shop_app`@`%`"]
    assert check_mysql_tier(SERVICE_USER, facts_from("shop_app", "CREATE USER x", grants)).status == "pass"


@pytest.mark.parametrize("exc,kind", [
    (pymysql.err.OperationalError(1045, "Access denied for user 'shop_app'@'1.2.3.4' (using password: YES)"), "auth"),
    (pymysql.err.OperationalError(1524, "Plugin 'AWSAuthenticationPlugin' is not loaded"), "plugin"),
    (pymysql.err.OperationalError(3159, "Connections using insecure transport are prohibited"), "tls"),
    (pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'h' ([Errno 111] Connection refused)"),
     "refused"),
    (pymysql.err.OperationalError(2003, "Can't connect ([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                        "failed)"), "tls"),
    (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query (timed out)"), "timeout"),
    (pymysql.err.OperationalError(1049, "Unknown database 'shop'"), "missing"),
])
def test_errors_are_classified_and_the_token_redacted(exc: Exception, kind: str) -> None:
    token = "h:3306/?Action=connect&DBUser=shop_app&X-Amz-Signature=abc"
    exc.args = (exc.args[0], exc.args[1] + " " + token)
    error = classify_mysql_error(exc, secrets=(token,))
    assert error.kind == kind and token not in error.message and "<redacted>" in error.message
    verdict = check_mysql_connect(host="h", port=3306, user="shop_app", error=error, latency_ms=None, cafile=None)
    assert verdict.status == ("error" if kind == "timeout" else "fail")
    assert verdict.details["mysql_errno"] == exc.args[0] and token not in verdict.message
