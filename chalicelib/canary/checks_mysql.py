"""The MySQL family's database-side verdicts: ``db.connect``, ``db.iam_plugin``, ``db.tier``.

``db.connect`` opens a TLS connection with the server certificate verified against the CA
bundle and the host name (``VERIFY_IDENTITY``), logs in with a freshly signed token through
the cleartext plugin (:mod:`chalicelib.engines.mysql`) and records ``latency_ms``.

The user's facts come from ``SHOW CREATE USER`` and ``SHOW GRANTS``
(:class:`~chalicelib.engines.mysql_grants.MysqlUserFacts`): a user may run both about itself,
so they run on the target's own connection; with an administrator connection (the master user,
``RDSVEND_CANARY_MYSQL_ADMIN_DSN``) they are read before the login, so that a removed plugin is
named as such rather than as a refused login.
"""
from __future__ import annotations

from typing import Any

from chalicelib.canary.model import CheckResult, errored, failed, from_verdict, passed, skipped
from chalicelib.engines.base import DbConnectError
from chalicelib.engines.mysql_grants import IAM_PLUGIN, MysqlUserFacts, judge_tier
from chalicelib.policy.model import DbUser

__all__ = ["check_mysql_connect", "check_iam_plugin", "check_mysql_tier", "iam_plugin_sql", "flavour_of",
           "user_problem"]


# ----------------------------------------------------------------------------------- verdicts

def iam_plugin_sql(user: str, flavour: str = "mysql") -> str:
    """The statement that makes ``user`` an IAM user (RDS for MySQL / for MariaDB)."""
    name = "'" + user.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if flavour == "mariadb":
        return f"ALTER USER {name}@'%' IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS';"
    return f"ALTER USER {name}@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS';"


_CONNECT_FIX = {
    "auth": ("1045 Access denied: in order, IAM auth enabled on the instance (rds.iam_auth_enabled), the user "
             "identified with AWSAuthenticationPlugin (db.iam_plugin), the signer may rds-db:connect on the "
             "exact dbuser ARN (iam.signer_allows, org.scp_allows), and the token was signed for this exact "
             "host, port, user and region"),
    "plugin": ("1524 plugin not loaded: turn on IAM database authentication on the instance or cluster "
               "(aws rds modify-db-instance --enable-iam-database-authentication --apply-immediately)"),
    "tls": ("the connection was not TLS with a verified server certificate: connect with TLS (RDS refuses "
            "insecure transport with 3159 when require_secure_transport is on; tokens always need TLS), "
            "verify against the RDS global bundle (mysql --ssl-ca=rds-global-bundle.pem "
            "--ssl-verify-server-cert, or --ssl-mode=VERIFY_IDENTITY) and use the endpoint's name"),
    "refused": ("nothing accepts connections there: check host and port, the security group and network "
                "ACLs from the canary's subnets, and that the database is running"),
    "timeout": "no answer in time: check security groups, routes and NAT, and the database's load",
    "missing": "create the database named in the policy's dbname, or fix dbname",
    "other": "read the server's message above; check the database's error log for the same minute",
}


def check_mysql_connect(*, host: str, port: int, user: str, error: DbConnectError | None,
                        latency_ms: float | None, cafile: str | None) -> CheckResult:
    cid = "db.connect"
    details: dict[str, Any] = {"host": host, "port": port, "user": user, "engine_family": "mysql",
                               "ssl_mode": "VERIFY_IDENTITY", "ssl_ca": cafile,
                               "auth_plugin": "mysql_clear_password"}
    if error is None:
        details["latency_ms"] = latency_ms
        return passed(cid, f"connected to {host}:{port} as {user} with a fresh token (TLS VERIFY_IDENTITY, "
                      f"mysql_clear_password, {latency_ms} ms)", **details)
    details["error_kind"] = error.kind
    details["mysql_errno"] = error.errno
    if error.kind == "timeout":
        return errored(cid, f"no answer from {host}:{port} within the connect timeout: {error.message}",
                       _CONNECT_FIX["timeout"], **details)
    return failed(cid, f"could not connect to {host}:{port} as {user}: {error.message}",
                  _CONNECT_FIX[error.kind], **details)


def user_problem(cid: str, facts: MysqlUserFacts | DbConnectError | None, why: str) -> CheckResult | None:
    if facts is None:
        return skipped(cid, f"not checked: {why}")
    if isinstance(facts, DbConnectError):
        return errored(cid, f"could not read the user's grants: {facts.message}", error_kind=facts.kind)
    return None


def check_iam_plugin(user: str, facts: MysqlUserFacts | DbConnectError | None, why: str = "",
                     flavour: str = "mysql") -> CheckResult:
    cid = "db.iam_plugin"
    early = user_problem(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, MysqlUserFacts)
    if not facts.exists:
        create = iam_plugin_sql(user, flavour).replace("ALTER USER", "CREATE USER", 1)
        return failed(cid, f"user {user} does not exist in the database", create, user=user,
                      engine_family="mysql")
    if facts.iam:
        return passed(cid, f"{user} is identified with {IAM_PLUGIN}", user=user, plugins=list(facts.plugins),
                      engine_family="mysql")
    return failed(cid, f"{user} is not identified with {IAM_PLUGIN} (its authentication: "
                  f"{', '.join(facts.plugins) or 'none'}): every token is refused with 1045 Access denied",
                  iam_plugin_sql(user, flavour), user=user, plugins=list(facts.plugins), engine_family="mysql")


def check_mysql_tier(user: DbUser, facts: MysqlUserFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.tier"
    if user.tier is None:
        return skipped(cid, f"no tier declared for {user.name}")
    early = user_problem(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, MysqlUserFacts)
    return from_verdict(cid, judge_tier(user.name, user.tier, facts))


def flavour_of(engine: str) -> str:
    return "mariadb" if engine == "mariadb" else "mysql"
