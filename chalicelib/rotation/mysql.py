"""The MySQL family (MySQL, MariaDB, Aurora MySQL) for the rotation: PyMySQL over TLS with the
CA and the host name verified, always.

Alternating users: MySQL has no object owners (privileges are per schema and table), so the
pair shares one role: the owner role (``<user>_owner``) receives every privilege the base login
holds, both logins are granted it as their DEFAULT ROLE, and the clone is granted the base's
other roles, so either login reads and writes what the other created. Password hashes that
``SHOW GRANTS`` prints (MariaDB's ``IDENTIFIED BY PASSWORD``) are cut before anything else is
done with a line, and never logged.
"""
from __future__ import annotations

import re
from typing import Any

from chalicelib.canary.checks_mysql import (
    _read_facts,
    _tls_context,
    check_mysql_tier,
    classify_mysql_error,
)
from chalicelib.canary.model import CheckResult
from chalicelib.policy.model import DbUser
from chalicelib.rotation.errors import RotationDbError
from chalicelib.rotation.secret import DbSecret

__all__ = ["MysqlEngine", "MysqlSession", "retarget_grant"]

_IDENTIFIED = re.compile(r"\s+IDENTIFIED\s+(BY|VIA|WITH)\b.*?(?=\s+WITH\s+(GRANT|MAX_)|$)", re.I | re.S)
_ROLE_GRANT = re.compile(r"^GRANT\s+`(?P<role>[^`]+)`(@`[^`]*`)?\s+TO\s+", re.I)
_GRANTEE = re.compile(r"\s+TO\s+(`[^`]*`|'[^']*')(@(`[^`]*`|'[^']*'))?", re.I)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def retarget_grant(line: str, grantee: str) -> str | None:
    """One ``SHOW GRANTS`` line given to ``grantee`` (already quoted) instead, without any
    IDENTIFIED part; None for lines that grant nothing (USAGE, PROXY)."""
    line = _IDENTIFIED.sub("", line.strip())
    upper = line.upper()
    if upper.startswith("GRANT USAGE ON *.*") or upper.startswith("GRANT PROXY"):
        return None
    replaced, count = _GRANTEE.subn(f" TO {grantee}", line, count=1)
    return replaced if count else None


class MysqlSession:
    def __init__(self, conn: Any, secret: DbSecret) -> None:
        self._conn = conn
        self._secrets = (secret.password,)

    def _exec(self, what: str, query: str, params: Any = None, *, hide: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        import pymysql

        try:
            with self._conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall() or ())
        except (pymysql.MySQLError, OSError) as exc:
            error = classify_mysql_error(exc, secrets=(*self._secrets, *hide))
            raise RotationDbError(f"{what}: {error.message}", kind=error.kind) from None

    def current_role(self) -> str:
        row = self._exec("reading the current role", "SELECT CURRENT_ROLE()")
        return str(row[0][0]) if row and row[0][0] is not None else ""

    def _hosts(self, user: str) -> list[str]:
        rows = self._exec(f"reading the hosts of {user}", "SELECT Host FROM mysql.user WHERE User = %s", (user,))
        return [str(r[0]) for r in rows]

    def set_password(self, username: str, password: str) -> None:
        own = self._exec("reading the current user", "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        if own and own[0][0] == username:
            version = self._exec("reading the server version", "SELECT VERSION()")
            # one's own password: MariaDB wants SET PASSWORD (ALTER USER needs CREATE USER there),
            # MySQL 5.7+ takes ALTER USER CURRENT_USER() (its SET PASSWORD has no PASSWORD())
            statement = ("SET PASSWORD = PASSWORD(%s)" if "mariadb" in str(version[0][0]).lower()
                         else "ALTER USER CURRENT_USER() IDENTIFIED BY %s")
            self._exec(f"changing the password of {username}", statement, (password,), hide=(password,))
            return
        hosts = self._hosts(username)
        if not hosts:
            raise RotationDbError(f"user {username} does not exist", kind="missing")
        for host in hosts:
            self._exec(f"changing the password of {username}", "ALTER USER %s@%s IDENTIFIED BY %s",
                       (username, host, password), hide=(password,))

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        hosts = self._hosts(base)
        if not hosts:
            raise RotationDbError(f"user {base} does not exist", kind="missing")
        self._exec(f"creating role {owner}", f"CREATE ROLE IF NOT EXISTS {_quote(owner)}")
        for host in hosts:
            self._exec(f"creating user {clone}", "CREATE USER IF NOT EXISTS %s@%s", (clone, host))
            lines = [str(r[0]) for r in self._exec(f"reading the grants of {base}", "SHOW GRANTS FOR %s@%s",
                                                    (base, host))]
            for line in lines:
                role = _ROLE_GRANT.match(line)
                if role is not None and role["role"] == owner:
                    continue
                target = f"{_quote(clone)}@{_quote(host)}" if role is not None else _quote(owner)
                statement = retarget_grant(line, target)
                if statement is not None:
                    self._exec(f"copying a grant of {base}", statement)
            for login in (base, clone):
                self._exec(f"granting {owner} to {login}", f"GRANT {_quote(owner)} TO %s@%s", (login, host))
                self._exec(f"making {owner} the default role of {login}",
                           f"SET DEFAULT ROLE {_quote(owner)} FOR %s@%s", (login, host))

    def tier_check(self, username: str, tier: str | None) -> CheckResult:
        import pymysql

        try:
            facts = _read_facts(self._conn, username, None)
        except (pymysql.MySQLError, OSError) as exc:
            error = classify_mysql_error(exc, secrets=self._secrets)
            raise RotationDbError(f"reading the privileges of {username}: {error.message}", kind=error.kind) from None
        return check_mysql_tier(DbUser(name=username, auth="password", tier=tier), facts)  # type: ignore[arg-type]  # the tier is checked by check_mysql_tier

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection is not news
            pass


class MysqlEngine:
    def login(self, secret: DbSecret, *, ssl_root_cert: str | None, timeout: float) -> MysqlSession:
        import pymysql

        kwargs: dict[str, Any] = {
            "host": secret.host, "port": secret.port, "user": secret.username, "password": secret.password,
            "ssl": _tls_context(ssl_root_cert),  # CA and host name verified: never plaintext
            "connect_timeout": max(2, int(timeout)), "read_timeout": max(2, int(timeout)),
            "write_timeout": max(2, int(timeout)), "autocommit": True, "program_name": "rdsvend-rotate",
        }
        if secret.dbname:
            kwargs["database"] = secret.dbname
        try:
            conn = pymysql.connect(**kwargs)
        except (pymysql.MySQLError, OSError) as exc:
            error = classify_mysql_error(exc, secrets=(secret.password,))
            raise RotationDbError(f"cannot log in as {secret.username} at {secret.host}:{secret.port}: "
                                  f"{error.message}", kind=error.kind) from None
        finally:
            kwargs.clear()
        return MysqlSession(conn, secret)
