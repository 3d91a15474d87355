"""The MySQL family (MySQL, MariaDB, Aurora MySQL) through PyMySQL: TLS with the CA and the
host name verified (``VERIFY_IDENTITY``), always; tokens go in clear inside it (the cleartext
plugin), as RDS requires.

Passwords never reach the server's logs in clear: MariaDB gets the mysql_native_password hash
computed here (``SET PASSWORD = '*…'``, ``ALTER USER … IDENTIFIED BY PASSWORD '*…'``), since its
general and slow logs print statements as sent; MySQL rewrites every statement that carries a
password before it logs it (``IDENTIFIED BY <secret>``), so it keeps its own plugin and gets
``ALTER USER … IDENTIFIED BY``.

Alternating users: MySQL has no object owners (privileges are per schema and table), so the
pair shares one role: the owner role (``<user>_owner``) receives every privilege the base login
holds, both logins are granted it as their DEFAULT ROLE, and the clone is granted the base's
other roles, so either login reads and writes what the other created.

PyMySQL is imported when the first login is made (:func:`driver`), not when the module is.
"""
from __future__ import annotations

import socket
import ssl
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

from chalicelib.engines.base import (
    ConnectParams,
    DbConnectError,
    SessionInfo,
    TierVerdict,
    left_after_wait,
    redact,
    same_server,
)
from chalicelib.engines.mysql_grants import (
    ROLE_GRANT,
    MysqlUserFacts,
    facts_from,
    judge_tier,
    native_password_hash,
    quote_name,
    retarget_grant,
)

__all__ = ["MysqlEngine", "MysqlSession", "MysqlAdmin", "classify_mysql_error", "tls_context", "driver"]

_NO_SUCH_USER = (1133, 1396)
_NOT_OWNER = 1095


def driver() -> ModuleType:
    """PyMySQL, loaded on first use (a start-up-time saving for the functions that need no database)."""
    import pymysql  # the engine's one lazy driver import

    module: ModuleType = pymysql  # PyMySQL ships no type information
    return module


def _errors() -> tuple[type[BaseException], ...]:
    return (driver().MySQLError, OSError)


#: how a failure is told apart, in order (first match wins): (kind, server error numbers,
#: exception types, fragments of the lowercased message)
_KINDS: tuple[tuple[str, frozenset[int], tuple[type[BaseException], ...], tuple[str, ...]], ...] = (
    ("auth", frozenset({1045}), (), ()),
    ("plugin", frozenset({1524}), (), ()),
    ("tls", frozenset({3159}), (ssl.SSLError,), ("certificate", "ssl", "tls")),
    ("timeout", frozenset({2013}), (TimeoutError, socket.timeout), ("timed out",)),
    ("refused", frozenset({2003}), (), ("connection refused", "name or service not known")),
    ("missing", frozenset({1049, 1044}), (), ()),
)


def _kind(errno: int | None, exc: BaseException, low: str) -> str:
    for kind, errnos, types, fragments in _KINDS:
        if errno in errnos or isinstance(exc, types) or any(fragment in low for fragment in fragments):
            return kind
    return "other"


def classify_mysql_error(exc: BaseException, *, secrets: tuple[str, ...] = ()) -> DbConnectError:
    """A PyMySQL / socket / TLS failure as a :class:`DbConnectError` (kind + one clean line, errno)."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    errno = args[0] if args and isinstance(args[0], int) else None
    text = redact(str(args[1]) if len(args) > 1 else str(exc), secrets)
    text = " ".join(text.split())[:400] or type(exc).__name__
    message = f"({errno}) {text}" if errno is not None else text
    return DbConnectError(_kind(errno, exc, text.lower()), message, errno)


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """The one TLS context of the MySQL family: the CA verified, the host name checked, TLS 1.2+."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _login(kwargs: dict[str, Any], password: str) -> Any:
    try:
        return driver().connect(**kwargs)
    except _errors() as exc:
        raise classify_mysql_error(exc, secrets=(password,)) from None
    finally:
        kwargs.clear()


#: how long ending a user's sessions waits for the killed ones to leave the process list
END_SESSIONS_WAIT_MS = 5000

class MysqlSession:
    """One login. Every failure is a :class:`DbConnectError` naming what was being done."""

    def __init__(self, conn: Any, secrets: tuple[str, ...]) -> None:
        self._conn = conn
        self._secrets = secrets
        self._mariadb: bool | None = None
        self.end_wait_ms: int = END_SESSIONS_WAIT_MS

    def execute(self, what: str, query: str, params: Any = None, *,
                hide: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows. ``hide``: values no message may carry."""
        try:
            with self._conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall() or ())
        except _errors() as exc:
            error = classify_mysql_error(exc, secrets=(*self._secrets, *hide))
            raise DbConnectError(error.kind, f"{what}: {error.message}", error.errno) from None

    def _show_create_user(self, user: str, host: str | None) -> str | None:
        try:
            if host is None:
                rows = self.execute(f"reading the privileges of {user}", "SHOW CREATE USER CURRENT_USER()")
            else:
                rows = self.execute(f"reading the privileges of {user}", "SHOW CREATE USER %s@%s", (user, host))
        except DbConnectError as exc:
            if exc.errno in _NO_SUCH_USER:
                return None
            raise
        return str(rows[0][0]) if rows else None

    def read_facts(self, user: str, host: str | None) -> MysqlUserFacts:
        """``SHOW CREATE USER`` and ``SHOW GRANTS`` for ``user@host``, or for the current user."""
        create = self._show_create_user(user, host)
        if create is None:
            return MysqlUserFacts(user=user, exists=False)
        if host is None:
            rows = self.execute(f"reading the grants of {user}", "SHOW GRANTS")
        else:
            rows = self.execute(f"reading the grants of {user}", "SHOW GRANTS FOR %s@%s", (user, host))
        return facts_from(user, create, [str(r[0]) for r in rows])

    def user_facts(self, user: str) -> MysqlUserFacts:
        """The facts of this session's own login (a user may read its own, nobody else's)."""
        return self.read_facts(user, None)

    def current_role(self) -> str:
        row = self.execute("reading the current role", "SELECT CURRENT_ROLE()")
        return str(row[0][0]) if row and row[0][0] is not None else ""

    def hosts_of(self, user: str) -> list[str]:
        rows = self.execute(f"reading the hosts of {user}",
                            "SELECT Host FROM mysql.user WHERE User = %s ORDER BY Host = '%%' DESC, Host", (user,))
        return [str(r[0]) for r in rows]

    def is_mariadb(self) -> bool:
        if self._mariadb is None:
            version = self.execute("reading the server version", "SELECT VERSION()")
            self._mariadb = "mariadb" in str(version[0][0]).lower()
        return self._mariadb

    def set_password(self, username: str, password: str) -> None:
        what = f"changing the password of {username}"
        hashed = native_password_hash(password)
        own = self.execute("reading the current user", "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        if own and own[0][0] == username:
            # one's own password: MariaDB wants SET PASSWORD (ALTER USER needs CREATE USER there)
            if self.is_mariadb():
                self.execute(what, "SET PASSWORD = %s", (hashed,), hide=(password, hashed))
            else:
                self.execute(what, "ALTER USER CURRENT_USER() IDENTIFIED BY %s", (password,), hide=(password,))
            return
        hosts = self.hosts_of(username)
        if not hosts:
            raise DbConnectError("missing", f"user {username} does not exist")
        for host in hosts:
            if self.is_mariadb():
                self.execute(what, "ALTER USER %s@%s IDENTIFIED BY PASSWORD %s", (username, host, hashed),
                             hide=(password, hashed))
            else:
                self.execute(what, "ALTER USER %s@%s IDENTIFIED BY %s", (username, host, password), hide=(password,))

    def _copy_grants(self, base: str, clone: str, owner: str, host: str) -> None:
        lines = [str(r[0]) for r in self.execute(f"reading the grants of {base}", "SHOW GRANTS FOR %s@%s",
                                                 (base, host))]
        for line in lines:
            role = ROLE_GRANT.match(line)
            if role is not None and role["role"] == owner:
                continue
            target = f"{quote_name(clone)}@{quote_name(host)}" if role is not None else quote_name(owner)
            statement = retarget_grant(line, target)
            if statement is not None:
                self.execute(f"copying a grant of {base}", statement)

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        hosts = self.hosts_of(base)
        if not hosts:
            raise DbConnectError("missing", f"user {base} does not exist")
        self.execute(f"creating role {owner}", f"CREATE ROLE IF NOT EXISTS {quote_name(owner)}")
        for host in hosts:
            self.execute(f"creating user {clone}", "CREATE USER IF NOT EXISTS %s@%s", (clone, host))
            self._copy_grants(base, clone, owner, host)
            for login in (base, clone):
                self.execute(f"granting {owner} to {login}", f"GRANT {quote_name(owner)} TO %s@%s", (login, host))
                self.execute(f"making {owner} the default role of {login}",
                             f"SET DEFAULT ROLE {quote_name(owner)} FOR %s@%s", (login, host))

    def sessions_of(self, user: str) -> tuple[SessionInfo, ...]:
        rows = self.execute(f"listing the sessions of {user}",
                            "SELECT ID, USER, HOST, DB, COMMAND FROM information_schema.PROCESSLIST "
                            "WHERE USER = %s AND ID <> CONNECTION_ID() ORDER BY ID", (user,))
        return tuple(SessionInfo(id=int(tid), user=str(name), client=str(host).rsplit(":", 1)[0] if host else None,
                                 application=str(db) if db else None, state=str(command) if command else None)
                     for tid, name, host, db, command in rows)

    def end_sessions(self, user: str) -> int:
        """End ``user``'s other sessions; how many were gone within :attr:`end_wait_ms`.

        ``KILL CONNECTION`` only marks a session: it stays in the process list (``Killed``) until
        its thread notices, so the sessions killed are waited for here."""
        killed = []
        for info in self.sessions_of(user):
            try:
                self.execute(f"ending session {info.id} of {user}", "KILL CONNECTION %s", (info.id,))
            except DbConnectError as exc:
                if exc.errno != _NOT_OWNER:
                    raise
                # RDS's master user has no SUPER / CONNECTION_ADMIN: RDS gives it mysql.rds_kill
                self.execute(f"ending session {info.id} of {user}", "CALL mysql.rds_kill(%s)", (info.id,))
            killed.append(info.id)
        if not killed:
            return 0
        return len(killed) - left_after_wait(lambda: len({s.id for s in self.sessions_of(user)} & set(killed)),
                                             self.end_wait_ms / 1000)

    def close(self) -> None:
        try:
            self._conn.close()
        except _errors():  # closing a broken connection is not news
            pass


class MysqlAdmin:
    """Reads users' facts through an administrator's ``mysql://USER:PASSWORD@HOST:PORT/`` DSN
    (TLS verified), for targets at the DSN's host and port."""

    def __init__(self, dsn: str, cafile: str | None = None) -> None:
        parts = urlsplit(dsn)
        if parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
            raise ValueError("the MySQL admin DSN must look like mysql://USER:PASSWORD@HOST:PORT/")
        self._host = parts.hostname
        self._port = parts.port or 3306
        self._user = unquote(parts.username or "")
        self._password = unquote(parts.password or "")
        self._cafile = cafile

    def __repr__(self) -> str:  # never the DSN: it holds a password
        return f"MysqlAdmin(host={self._host!r}, port={self._port})"

    def covers(self, host: str | None, port: int | None) -> bool:
        return same_server(host, port, self._host, self._port)

    def session(self, timeout: float) -> MysqlSession:
        """The administrator's own login (for what only it may do: another user's sessions)."""
        params = ConnectParams(host=self._host, port=self._port, dbname="", user=self._user, password=self._password,
                               sslrootcert=self._cafile, connect_timeout=int(timeout),
                               application_name="rdsvend-canary-admin")
        return MysqlEngine().connect(params)

    def user_facts(self, host: str, port: int, dbname: str, user: str, timeout: float) -> MysqlUserFacts:
        session = self.session(timeout)
        try:
            hosts = session.hosts_of(user)
            if not hosts:
                return MysqlUserFacts(user=user, exists=False)
            return session.read_facts(user, hosts[0])
        finally:
            session.close()


class MysqlEngine:
    """The MySQL family: logins over TLS with the CA and the host name verified."""

    family: str = "mysql"
    default_dbname: str = ""

    def connect(self, params: ConnectParams) -> MysqlSession:
        timeout = max(2, int(params.connect_timeout))
        # No hostaddr here: PyMySQL checks the certificate against the host it dials, and the
        # name on the certificate is what VERIFY_IDENTITY is about.
        kwargs: dict[str, Any] = {
            "host": params.host, "port": params.port, "user": params.user, "password": params.password,
            "ssl": tls_context(params.sslrootcert), "connect_timeout": timeout, "read_timeout": timeout,
            "write_timeout": timeout, "autocommit": True, "program_name": params.application_name,
        }
        if params.dbname:
            kwargs["database"] = params.dbname
        return MysqlSession(_login(kwargs, params.password), (params.password,))

    def classify(self, exc: BaseException, *, secrets: tuple[str, ...] = ()) -> DbConnectError:
        return classify_mysql_error(exc, secrets=secrets)

    def admin(self, dsn: str, cafile: str | None = None) -> MysqlAdmin:
        return MysqlAdmin(dsn, cafile)

    def judge_tier(self, name: str, tier: str | None, facts: MysqlUserFacts) -> TierVerdict:
        return judge_tier(name, tier, facts)
