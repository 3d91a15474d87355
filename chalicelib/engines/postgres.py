"""PostgreSQL (RDS, Aurora PostgreSQL) through psycopg 3: TLS ``verify-full`` always.

Passwords are sent already hashed: libpq computes the SCRAM-SHA-256 verifier on this side
(``PQencryptPasswordConn``), so the plaintext reaches neither the server nor its logs
(``log_statement``, or ``log_min_error_statement`` when an ALTER ROLE fails).

Alternating users: both logins are members of a NOLOGIN owner role and act as it
(``ALTER ROLE login SET role = owner``), so what either creates is owned by the owner role and
readable by the other; the base login's direct privileges (tables, sequences, schemas, the
database) are granted to the owner role, its role memberships to the clone, and what either
login already owns is reassigned to the owner role.

psycopg is imported when the first login is made (:func:`driver`), not when the module is:
the functions that never reach a database start without it.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from chalicelib.engines.base import (
    ConnectParams,
    DbConnectError,
    SessionInfo,
    TierVerdict,
    left_after_wait,
    same_server,
)
from chalicelib.engines.postgres_catalog import (
    COPY_PRIVILEGES_SQL,
    END_SESSIONS_SQL,
    END_SESSIONS_WAIT_MS,
    NOT_COPIED,
    ROLE_FACTS_SQL,
    SESSIONS_LEFT_SQL,
    SESSIONS_SQL,
    SIGNAL_SESSIONS_SQL,
    TERMINATE_TIMEOUT_FROM,
    RoleFacts,
    classify_connect_error,
    facts_from_row,
    judge_tier,
)

__all__ = ["PostgresEngine", "PostgresSession", "PostgresAdmin", "driver"]


def driver() -> ModuleType:
    """psycopg, loaded on first use (a start-up-time saving for the functions that need no database)."""
    import psycopg  # the engine's one lazy driver import

    return psycopg


def _sql() -> Any:
    return driver().sql


def _statement_timeout_ms(connect_timeout: int | float) -> int:
    return max(1000, int(connect_timeout * 1000))


class PostgresSession:
    """One login. Every failure is a :class:`DbConnectError` naming what was being done.

    ``server_version`` is the server's ``server_version_num`` (``150004`` for 15.4), read from
    the connection: what the server can do depends on it (and a test may lower it to take the
    older servers' way on a newer server). ``end_wait_ms`` bounds how long :meth:`end_sessions`
    waits for the sessions it ends to be gone."""

    def __init__(self, conn: Any, secrets: tuple[str, ...]) -> None:
        self._conn = conn
        self._secrets = secrets
        self.server_version: int = int(conn.info.server_version)
        self.end_wait_ms: int = END_SESSIONS_WAIT_MS

    def _fail(self, what: str, exc: BaseException) -> DbConnectError:
        error = classify_connect_error(str(exc), secrets=self._secrets)
        return DbConnectError(error.kind, f"{what}: {error.message}")

    def execute(self, what: str, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (none for a statement that returns none)."""
        psycopg = driver()
        try:
            with self._conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall()) if cur.description else []
        except psycopg.Error as exc:
            raise self._fail(what, exc) from None

    def user_facts(self, user: str) -> RoleFacts:
        rows = self.execute(f"reading the privileges of {user}", ROLE_FACTS_SQL, {"role": user})
        return facts_from_row(user, rows[0] if rows else None)

    def current_role(self) -> str:
        return str(self.execute("reading current_user", "SELECT current_user")[0][0])

    def _verifier(self, username: str, password: str) -> str:
        try:
            hashed = self._conn.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256")
        except driver().Error as exc:
            raise self._fail("hashing the new password", exc) from None
        return bytes(hashed).decode()

    def _role_exists(self, name: str) -> bool:
        return bool(self.execute(f"looking up role {name}", "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s",
                                 (name,)))

    def set_password(self, username: str, password: str) -> None:
        sql = _sql()
        verifier = self._verifier(username, password)
        self.execute(f"changing the password of {username}",
                     sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(username), sql.Literal(verifier)))

    def _ensure_role(self, name: str, *, login: bool) -> None:
        sql = _sql()
        ident = sql.Identifier(name)
        if not self._role_exists(name):  # a new login has no password: it cannot log in before set_password
            self.execute(f"creating role {name}", sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN"))
                         .format(ident))
        elif login:
            self.execute(f"letting {name} log in", sql.SQL("ALTER ROLE {} LOGIN").format(ident))
        else:
            self.execute(f"making {name} NOLOGIN", sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))

    def _copy_memberships(self, base: str, clone: str, owner: str) -> None:
        sql = _sql()
        memberships = self.execute(
            f"reading the roles of {base}",
            "SELECT r.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid "
            "WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s) ORDER BY 1", (base,))
        for (role,) in memberships:
            if role in NOT_COPIED or role == owner:
                continue
            self.execute(f"granting {role} to {clone}",
                         sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(clone)))

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        sql = _sql()
        ident = sql.Identifier
        if not self._role_exists(base):
            raise DbConnectError("missing", f"role {base} does not exist")
        self._ensure_role(owner, login=False)
        self._ensure_role(clone, login=True)
        for login in (base, clone):
            self.execute(f"granting {owner} to {login}", sql.SQL("GRANT {} TO {}").format(ident(owner), ident(login)))
        self._copy_memberships(base, clone, owner)
        for (statement,) in self.execute(f"reading the privileges of {base}", COPY_PRIVILEGES_SQL,
                                         {"base": base, "owner": owner}):
            self.execute(f"copying a privilege of {base} to {owner}", statement)
        self.execute(f"reassigning what {base} and {clone} own to {owner}",
                     sql.SQL("REASSIGN OWNED BY {}, {} TO {}").format(ident(base), ident(clone), ident(owner)))
        for login in (base, clone):
            self.execute(f"making {login} act as {owner}",
                         sql.SQL("ALTER ROLE {} SET role = {}").format(ident(login), sql.Literal(owner)))

    def sessions_of(self, user: str) -> tuple[SessionInfo, ...]:
        rows = self.execute(f"listing the sessions of {user}", SESSIONS_SQL, {"user": user})
        return tuple(SessionInfo(id=int(pid), user=str(name), client=client, application=app or None, state=state)
                     for pid, name, client, app, state in rows)

    def end_sessions(self, user: str) -> int:
        """End ``user``'s other sessions; how many were gone within :attr:`end_wait_ms`.

        From PostgreSQL 14 ``pg_terminate_backend(pid, timeout)`` waits on the server; before it
        (11 to 13, still run by RDS under extended support) it only signals, and the sessions
        signalled are waited for here, by polling pg_stat_activity."""
        if self.server_version >= TERMINATE_TIMEOUT_FROM:
            rows = self.execute(f"ending the sessions of {user}", END_SESSIONS_SQL,
                                {"user": user, "wait_ms": self.end_wait_ms})
            return int(rows[0][0]) if rows else 0
        rows = self.execute(f"ending the sessions of {user}", SIGNAL_SESSIONS_SQL, {"user": user})
        signalled = [(int(pid), started) for pid, started, sent in rows if sent]
        return len(signalled) - self._left_after_wait(user, signalled, self.end_wait_ms / 1000)

    def _left_after_wait(self, user: str, sessions: list[tuple[int, Any]], seconds: float) -> int:
        """How many of ``sessions`` (pid, start) are still there, waiting up to ``seconds`` for none."""
        if not sessions:
            return 0
        params = {"pids": [pid for pid, _ in sessions], "starts": [started for _, started in sessions]}
        return left_after_wait(
            lambda: int(self.execute(f"waiting for the sessions of {user} to end", SESSIONS_LEFT_SQL, params)[0][0]),
            seconds)

    def close(self) -> None:
        try:
            self._conn.close()
        except driver().Error:  # closing a broken connection is not news
            pass


def _connect(kwargs: dict[str, Any], password: str, timeout_ms: int) -> Any:
    psycopg = driver()
    try:
        conn = psycopg.connect(**kwargs)
    except psycopg.Error as exc:
        raise classify_connect_error(str(exc), secrets=(password,)) from None
    finally:
        kwargs.clear()
    try:
        # Bound every statement too: a server that accepts and then hangs costs no more.
        conn.execute(f"SET statement_timeout = {timeout_ms}")
    except psycopg.Error as exc:
        conn.close()
        raise classify_connect_error(str(exc), secrets=(password,)) from None
    return conn


class PostgresAdmin:
    """Reads users' facts through an administrator's DSN, on targets at the DSN's host:port."""

    def __init__(self, dsn: str, cafile: str | None = None) -> None:
        self._params: dict[str, Any] = dict(driver().conninfo.conninfo_to_dict(dsn))
        self._host = str(self._params.get("host", ""))
        self._port = int(self._params.get("port") or 5432)

    def __repr__(self) -> str:  # never the DSN: it holds a password
        return f"PostgresAdmin(host={self._host!r}, port={self._port})"

    def covers(self, host: str | None, port: int | None) -> bool:
        return same_server(host, port, self._host, self._port)

    def session(self, timeout: float, dbname: str | None = None) -> PostgresSession:
        """The administrator's own login (for what only it may do: another user's sessions)."""
        params: dict[str, Any] = dict(self._params)
        if dbname is not None:
            params["dbname"] = dbname
        params.update(connect_timeout=max(2, int(timeout)), autocommit=True)
        params.setdefault("application_name", "rdsvend-canary-admin")
        password = str(params.get("password") or "")
        return PostgresSession(_connect(params, password, _statement_timeout_ms(timeout)), (password,))

    def user_facts(self, host: str, port: int, dbname: str, user: str, timeout: float) -> RoleFacts:
        session = self.session(timeout, dbname)
        try:
            return session.user_facts(user)
        finally:
            session.close()


class PostgresEngine:
    """The PostgreSQL family: logins over TLS verify-full (libpq checks the CA and the host name)."""

    family: str = "postgres"
    default_dbname: str = "postgres"

    def connect(self, params: ConnectParams) -> PostgresSession:
        timeout = max(2, int(params.connect_timeout))
        kwargs: dict[str, Any] = {
            "host": params.host, "port": params.port, "dbname": params.dbname or self.default_dbname,
            "user": params.user, "password": params.password,
            "sslmode": "verify-full",  # always: never a plaintext fallback, whatever a secret says
            "connect_timeout": timeout, "application_name": params.application_name, "autocommit": True,
        }
        if params.sslrootcert:
            kwargs["sslrootcert"] = params.sslrootcert
        if params.hostaddr:
            kwargs["hostaddr"] = params.hostaddr
        conn = _connect(kwargs, params.password, _statement_timeout_ms(timeout))
        return PostgresSession(conn, (params.password,))

    def classify(self, exc: BaseException, *, secrets: tuple[str, ...] = ()) -> DbConnectError:
        return classify_connect_error(str(exc), secrets=secrets)

    def admin(self, dsn: str, cafile: str | None = None) -> PostgresAdmin:
        return PostgresAdmin(dsn, cafile)

    def judge_tier(self, name: str, tier: str | None, facts: RoleFacts) -> TierVerdict:
        return judge_tier(name, tier, facts)
