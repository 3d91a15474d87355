"""The doctor's words for MySQL-family targets: RDS for MySQL and MariaDB refuse a login with
``ERROR 1045 (28000): Access denied for user`` (the token was checked and refused, or the user
is not an IAM user), ``ERROR 1524 (HY000): Plugin 'AWSAuthenticationPlugin' is not loaded``
(IAM authentication is off on the instance) or, without TLS, ``ERROR 3159 (HY000):
Connections using insecure transport are prohibited``. Pure: report in, text out.
"""
from __future__ import annotations

from chalicelib.canary.explain_shape import Why
from chalicelib.canary.model import CheckResult, TargetReport

__all__ = ["is_mysql_target", "mysql_refusal", "MYSQL_WHY"]

CLIENT_FLAGS = ("mysql --ssl-ca=rds-global-bundle.pem --ssl-verify-server-cert --enable-cleartext-plugin "
                "(Oracle's mysql: --ssl-mode=VERIFY_IDENTITY --enable-cleartext-plugin)")


def is_mysql_target(target: TargetReport) -> bool:
    return target.check("db.iam_plugin") is not None


def mysql_refusal(user: str) -> str:
    return f"ERROR 1045 (28000): Access denied for user '{user}'"


def _iam_auth(c: CheckResult, t: TargetReport) -> str:
    return ("IAM database authentication is off on the instance or cluster, so RDS has not loaded its "
            "AWSAuthenticationPlugin: every IAM user's login fails with ERROR 1524 (HY000): Plugin "
            "'AWSAuthenticationPlugin' is not loaded, however correct the token and the IAM policies are. "
            "Turning it on takes effect without a reboot (--apply-immediately).")


#: why a failed connection failed, by the error kind ``db.connect`` reports (other than ``auth``,
#: which names the user and has its own text)
_CONNECT_WHY: dict[str, str] = {
    "plugin": ("ERROR 1524: Plugin 'AWSAuthenticationPlugin' is not loaded. RDS loads the plugin only while "
               "IAM database authentication is enabled on the instance or cluster."),
    "tls": ("The connection was refused for its transport: RDS requires TLS for token logins (ERROR 3159: "
            "Connections using insecure transport are prohibited while --require_secure_transport=ON), "
            "and a token sent in clear needs a verified server: use the RDS CA bundle, the endpoint name, "
            f"and {CLIENT_FLAGS}."),
    "refused": ("Nothing accepted the TCP connection: wrong host or port, a security group or NACL that rejects "
                "the canary, or a database that is down."),
    "timeout": "The endpoint did not answer in time: packets are probably dropped, or the server hung.",
}


def _connect(c: CheckResult, t: TargetReport) -> str:
    kind = c.details.get("error_kind")
    if c.status == "skip":
        return ""
    if kind == "auth":
        return (f"The server answered {mysql_refusal(t.db_user)}. Every IAM-side check above passed, so look "
                "at the database side: the user may not be identified with AWSAuthenticationPlugin (a later "
                "ALTER USER ... IDENTIFIED BY replaces it with a password), or the token was signed for "
                "another host name, port or user than the ones connected with (tokens are bound to all "
                f"three, and to the region). Clients must send the token with the cleartext plugin: {CLIENT_FLAGS}.")
    return _CONNECT_WHY.get(str(kind), "")


def _iam_plugin(c: CheckResult, t: TargetReport) -> str:
    return ("On RDS for MySQL and MariaDB a user logs in with IAM tokens only when it is identified with "
            "AWSAuthenticationPlugin (CREATE USER ... IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'; "
            "on MariaDB: IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS'). Any other authentication, "
            "such as a password set later with ALTER USER ... IDENTIFIED BY, makes the server compare the "
            f"token with that password: {mysql_refusal(t.db_user)} (using password: YES).")


def _tier(c: CheckResult, t: TargetReport) -> str:
    return ("The database user has more privilege than its tier allows. A service-user must not have SUPER, "
            "GRANT OPTION (at any level), CREATE USER or ALL PRIVILEGES on *.*; a service-admin must not have "
            "SUPER or ALL PRIVILEGES on *.*. Nothing is broken today, but a leaked token is worth much more "
            "than it should be.")


MYSQL_WHY: dict[str, Why] = {
    "rds.iam_auth_enabled": _iam_auth, "db.connect": _connect, "db.iam_plugin": _iam_plugin, "db.tier": _tier,
}
