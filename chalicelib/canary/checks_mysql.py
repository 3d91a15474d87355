"""Database-side checks for the MySQL family: ``db.connect``, ``db.iam_plugin``, ``db.tier``.

``db.connect`` opens a TLS connection with the server certificate verified against the CA
bundle and the host name (``VERIFY_IDENTITY``), logs in with a freshly signed token through
the cleartext plugin (PyMySQL) and records ``latency_ms``.

The user's facts come from ``SHOW CREATE USER`` (its authentication plugins: on RDS an IAM
user is ``IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'``, on RDS for MariaDB ``IDENTIFIED
VIA AWSAuthenticationPlugin USING 'RDS'``) and ``SHOW GRANTS``: a user may run both about
itself, so they run on the target's own connection; with an administrator connection (the
master user, ``RDSVEND_CANARY_MYSQL_ADMIN_DSN``) they are read before the login, so that a
removed plugin is named as such rather than as a refused login.
"""
from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from chalicelib.canary.checks_db import ConnectParams, DbConnectError
from chalicelib.canary.model import CheckResult, errored, failed, passed, skipped
from chalicelib.policy.model import DbUser

__all__ = ["IAM_PLUGIN", "MysqlUserFacts", "parse_plugins", "parse_grants", "facts_from", "classify_mysql_error",
           "PyMysqlConnector", "PyMysqlAdmin", "check_mysql_connect", "check_iam_plugin", "check_mysql_tier",
           "iam_plugin_sql"]

IAM_PLUGIN = "AWSAuthenticationPlugin"
_PLUGIN = re.compile(r"(?:IDENTIFIED\s+(?:WITH|VIA)|\bOR)\s+['`\"]?([A-Za-z0-9_]+)['`\"]?", re.I)
_GRANT = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?P<on>\S+(?:\s+\S+)?)\s+TO\s+(?P<rest>.*)$", re.I | re.S)
_SECRET_TAIL = re.compile(r"\s+IDENTIFIED\s+(?:BY|WITH|VIA)\b.*$", re.I | re.S)
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_UNKNOWN_THREAD = 1094  # ER_NO_SUCH_THREAD


@dataclass(frozen=True)
class MysqlUserFacts:
    """What the server says about one user (any of its hosts)."""

    user: str
    exists: bool
    plugins: tuple[str, ...] = ()
    global_privileges: tuple[str, ...] = ()  # on *.*, upper case ("ALL PRIVILEGES", "SUPER", ...)
    grant_option_on: tuple[str, ...] = ()  # the levels granted WITH GRANT OPTION ("*.*", "`shop`.*")
    grants: tuple[str, ...] = ()  # SHOW GRANTS lines, without any IDENTIFIED ... part

    @property
    def iam(self) -> bool:
        return IAM_PLUGIN.lower() in (p.lower() for p in self.plugins)


def parse_plugins(create_user: str) -> tuple[str, ...]:
    """The authentication plugins named by a ``SHOW CREATE USER`` line, in order."""
    head = create_user.split(" REQUIRE ", 1)[0]
    return tuple(dict.fromkeys(m.group(1) for m in _PLUGIN.finditer(head)))


def _split_privileges(text: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    out.append("".join(current).strip())
    return [p for p in out if p]


def parse_grants(lines: list[str]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(global privileges, levels WITH GRANT OPTION, cleaned lines)`` from ``SHOW GRANTS``."""
    global_privs: list[str] = []
    grant_option: list[str] = []
    cleaned: list[str] = []
    for raw in lines:
        line = _SECRET_TAIL.sub("", str(raw).strip())
        m = _GRANT.match(line)
        if m is None:  # a role grant ("GRANT `role` TO ...") or something new: kept, not judged
            cleaned.append(line)
            continue
        on = m.group("on")
        if re.search(r"WITH\s+GRANT\s+OPTION", str(raw), re.I):
            grant_option.append(on)
        if on.replace("`", "") == "*.*":
            global_privs += [re.sub(r"\s*\(.*\)$", "", p).upper() for p in _split_privileges(m.group("privs"))]
        cleaned.append(re.sub(r"\s+WITH\s+GRANT\s+OPTION.*$", " WITH GRANT OPTION", line, flags=re.I))
    return tuple(dict.fromkeys(global_privs)), tuple(dict.fromkeys(grant_option)), tuple(cleaned)


def facts_from(user: str, create_user: str | None, grants: list[str]) -> MysqlUserFacts:
    if create_user is None:
        return MysqlUserFacts(user=user, exists=False)
    privs, grant_option, cleaned = parse_grants(grants)
    return MysqlUserFacts(user=user, exists=True, plugins=parse_plugins(create_user), global_privileges=privs,
                          grant_option_on=grant_option, grants=cleaned)


def classify_mysql_error(exc: BaseException, *, secrets: tuple[str, ...] = ()) -> DbConnectError:
    """A PyMySQL / socket / TLS failure as a :class:`DbConnectError` (kind + one clean line)."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    errno = args[0] if args and isinstance(args[0], int) else None
    text = str(args[1]) if len(args) > 1 else str(exc)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())[:400] or type(exc).__name__
    low = text.lower()
    if errno == 1045:
        kind = "auth"
    elif errno == 1524:
        kind = "plugin"
    elif errno == 3159 or isinstance(exc, ssl.SSLError) or "certificate" in low or "ssl" in low or "tls" in low:
        kind = "tls"
    elif errno in (2013,) or isinstance(exc, TimeoutError | socket.timeout) or "timed out" in low:
        kind = "timeout"
    elif errno == 2003 or "connection refused" in low or "name or service not known" in low:
        kind = "refused"
    elif errno in (1049, 1044):
        kind = "missing"
    else:
        kind = "other"
    message = f"({errno}) {text}" if errno is not None else text
    error = DbConnectError(kind, message)
    error.errno = errno  # type: ignore[attr-defined]  # the MySQL error number rides along
    return error


def _tls_context(cafile: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _read_facts(conn: Any, user: str, host: str | None) -> MysqlUserFacts:
    """``SHOW CREATE USER`` and ``SHOW GRANTS`` for ``user@host``, or for the current user."""
    import pymysql

    with conn.cursor() as cur:
        try:
            if host is None:
                cur.execute("SHOW CREATE USER CURRENT_USER()")
            else:
                cur.execute("SHOW CREATE USER %s@%s", (user, host))
            row = cur.fetchone()
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in (1133, 1396):  # no such user
                return MysqlUserFacts(user=user, exists=False)
            raise
        if host is None:
            cur.execute("SHOW GRANTS")
        else:
            cur.execute("SHOW GRANTS FOR %s@%s", (user, host))
        grants = [str(r[0]) for r in cur.fetchall()]
    return facts_from(user, str(row[0]) if row else None, grants)


class _PyMysqlSession:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def user_facts(self, user: str) -> MysqlUserFacts:
        return _read_facts(self._conn, user, None)

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection is not news
            pass


class PyMysqlConnector:
    """Real logins through PyMySQL: TLS with CA and host name verified, the token in clear inside it."""

    def connect(self, params: ConnectParams) -> _PyMysqlSession:
        import pymysql

        timeout = max(2, int(params.connect_timeout))
        # No hostaddr here: PyMySQL checks the certificate against the host it dials, and the
        # name on the certificate is what VERIFY_IDENTITY is about.
        kwargs: dict[str, Any] = {
            "host": params.host, "port": params.port, "user": params.user,
            "password": params.password, "ssl": _tls_context(params.sslrootcert),
            "connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout,
            "autocommit": True, "program_name": params.application_name,
        }
        if params.dbname:
            kwargs["database"] = params.dbname
        try:
            conn = pymysql.connect(**kwargs)
        except (pymysql.MySQLError, OSError) as exc:
            raise classify_mysql_error(exc, secrets=(params.password,)) from None
        return _PyMysqlSession(conn)


class PyMysqlAdmin:
    """Reads users' facts through an administrator's ``mysql://USER:PASSWORD@HOST:PORT/`` DSN
    (TLS verified), for targets at the DSN's host and port."""

    def __init__(self, dsn: str, ssl_root_cert: str | None = None) -> None:
        parts = urlsplit(dsn)
        if parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
            raise ValueError("the MySQL admin DSN must look like mysql://USER:PASSWORD@HOST:PORT/")
        self._host = parts.hostname
        self._port = parts.port or 3306
        self._user = unquote(parts.username or "")
        self._password = unquote(parts.password or "")
        self._cafile = ssl_root_cert

    def __repr__(self) -> str:  # never the DSN: it holds a password
        return f"PyMysqlAdmin(host={self._host!r}, port={self._port})"

    def covers(self, host: str | None, port: int | None) -> bool:
        if not host or port != self._port:
            return False
        return host.lower() == self._host.lower() or (host.lower() in _LOOPBACK and self._host.lower() in _LOOPBACK)

    def end_sessions(self, user: str, timeout: float) -> list[str]:
        """End every session of ``user``; the connection ids that were ended. As on RDS, where the
        master user has no SUPER: ``CALL mysql.rds_kill(id)`` for each."""
        import pymysql

        t = max(2, int(timeout))
        try:
            conn = pymysql.connect(host=self._host, port=self._port, user=self._user, password=self._password,
                                   ssl=_tls_context(self._cafile), connect_timeout=t, read_timeout=t,
                                   write_timeout=t, autocommit=True, program_name="rdsvend-grant-sweep")
        except (pymysql.MySQLError, OSError) as exc:
            raise classify_mysql_error(exc, secrets=(self._password,)) from None
        ended: list[str] = []
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID()",
                            (user,))
                for (session_id,) in cur.fetchall():
                    try:
                        cur.execute("CALL mysql.rds_kill(%s)", (int(session_id),))
                    except pymysql.err.OperationalError as exc:
                        if exc.args and exc.args[0] == _UNKNOWN_THREAD:  # it ended meanwhile
                            continue
                        raise
                    ended.append(str(session_id))
            return ended
        except (pymysql.MySQLError, OSError) as exc:
            raise classify_mysql_error(exc, secrets=(self._password,)) from None
        finally:
            conn.close()

    def user_facts(self, user: str, timeout: float) -> MysqlUserFacts:
        import pymysql

        t = max(2, int(timeout))
        try:
            conn = pymysql.connect(host=self._host, port=self._port, user=self._user, password=self._password,
                                   ssl=_tls_context(self._cafile), connect_timeout=t, read_timeout=t,
                                   write_timeout=t, autocommit=True, program_name="rdsvend-canary-admin")
        except (pymysql.MySQLError, OSError) as exc:
            raise classify_mysql_error(exc, secrets=(self._password,)) from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT Host FROM mysql.user WHERE User = %s ORDER BY Host = '%%' DESC, Host", (user,))
                hosts = [str(r[0]) for r in cur.fetchall()]
            if not hosts:
                return MysqlUserFacts(user=user, exists=False)
            return _read_facts(conn, user, hosts[0])
        except (pymysql.MySQLError, OSError) as exc:
            raise classify_mysql_error(exc, secrets=(self._password,)) from None
        finally:
            conn.close()


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
    details["mysql_errno"] = getattr(error, "errno", None)
    if error.kind == "timeout":
        return errored(cid, f"no answer from {host}:{port} within the connect timeout: {error.message}",
                       _CONNECT_FIX["timeout"], **details)
    return failed(cid, f"could not connect to {host}:{port} as {user}: {error.message}",
                  _CONNECT_FIX[error.kind], **details)


def _early(cid: str, facts: MysqlUserFacts | DbConnectError | None, why: str) -> CheckResult | None:
    if facts is None:
        return skipped(cid, f"not checked: {why}")
    if isinstance(facts, DbConnectError):
        return errored(cid, f"could not read the user's grants: {facts.message}", error_kind=facts.kind)
    return None


def check_iam_plugin(user: str, facts: MysqlUserFacts | DbConnectError | None, why: str = "",
                     flavour: str = "mysql") -> CheckResult:
    cid = "db.iam_plugin"
    early = _early(cid, facts, why or "no database session")
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
    early = _early(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, MysqlUserFacts)
    name = user.name
    if not facts.exists:
        return skipped(cid, f"not checked: user {name} does not exist")
    quoted = "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'@'%'"
    privs = set(facts.global_privileges)
    problems: list[str] = []
    fixes: list[str] = []
    if "SUPER" in privs:
        problems.append("has SUPER")
        fixes.append(f"REVOKE SUPER ON *.* FROM {quoted};")
    if "ALL PRIVILEGES" in privs or "ALL" in privs:
        problems.append("has ALL PRIVILEGES on *.*")
        fixes.append(f"REVOKE ALL PRIVILEGES ON *.* FROM {quoted}; then grant only what the service needs")
    if user.tier == "service-user":
        if "CREATE USER" in privs:
            problems.append("can CREATE USER")
            fixes.append(f"REVOKE CREATE USER ON *.* FROM {quoted};")
        for level in facts.grant_option_on:
            problems.append(f"holds GRANT OPTION on {level}")
            fixes.append(f"REVOKE GRANT OPTION ON {level} FROM {quoted};")
    details = {"user": name, "tier": user.tier, "global_privileges": sorted(privs),
               "grant_option_on": list(facts.grant_option_on), "grants": list(facts.grants),
               "engine_family": "mysql"}
    if problems:
        return failed(cid, f"{name} ({user.tier}) " + ", ".join(problems), " ".join(dict.fromkeys(fixes)), **details)
    return passed(cid, f"{name}'s privileges fit tier {user.tier}", **details)


def flavour_of(engine: str) -> str:
    return "mariadb" if engine == "mariadb" else "mysql"
