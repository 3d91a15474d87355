"""PostgreSQL (RDS, Aurora) for the rotation: psycopg 3, TLS ``verify-full`` always.

Passwords are sent already hashed: libpq computes the SCRAM-SHA-256 verifier on this side
(``PQencryptPasswordConn``), so the plaintext reaches neither the server nor its logs
(``log_statement``, or ``log_min_error_statement`` when an ALTER ROLE fails).

Alternating users: both logins are members of a NOLOGIN owner role and act as it
(``ALTER ROLE login SET role = owner``), so what either creates is owned by the owner role and
readable by the other; the base login's direct privileges (tables, sequences, schemas, the
database) are granted to the owner role, its role memberships to the clone, and what either
login already owns is reassigned to the owner role.
"""
from __future__ import annotations

from typing import Any

from chalicelib.canary.checks_db import ROLE_FACTS_SQL, _row_to_facts, check_tier, classify_connect_error
from chalicelib.canary.model import CheckResult
from chalicelib.policy.model import DbUser
from chalicelib.rotation.errors import RotationDbError
from chalicelib.rotation.secret import DbSecret

__all__ = ["PostgresEngine", "PostgresSession", "COPY_PRIVILEGES_SQL"]

#: GRANT statements that give ``owner`` every privilege granted directly to ``base`` in this
#: database (identifiers quoted by the server: format('%I') and regclass).
COPY_PRIVILEGES_SQL = """
WITH base AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(base)s)
SELECT format('GRANT %%s ON TABLE %%s TO %%I', a.privilege_type, c.oid::regclass, %(owner)s::text)
  FROM pg_catalog.pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
 WHERE a.grantee = (SELECT oid FROM base) AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
UNION ALL
SELECT format('GRANT %%s ON SEQUENCE %%s TO %%I', a.privilege_type, c.oid::regclass, %(owner)s::text)
  FROM pg_catalog.pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
 WHERE a.grantee = (SELECT oid FROM base) AND c.relkind = 'S'
UNION ALL
SELECT format('GRANT %%s ON SCHEMA %%I TO %%I', a.privilege_type, n.nspname, %(owner)s::text)
  FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
 WHERE a.grantee = (SELECT oid FROM base)
UNION ALL
SELECT format('GRANT %%s ON DATABASE %%I TO %%I', a.privilege_type, d.datname, %(owner)s::text)
  FROM pg_catalog.pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
 WHERE d.datname = current_database() AND a.grantee = (SELECT oid FROM base)
"""

#: roles a clone never inherits: RDS's authentication roles (a password login in rds_iam cannot
#: log in with its password on RDS) and the pair's own owner role (granted separately)
_NOT_COPIED = ("rds_iam", "rds_ad")


class PostgresSession:
    def __init__(self, conn: Any, secret: DbSecret) -> None:
        self._conn = conn
        self._secret_password = secret.password

    def _fail(self, what: str, exc: Exception) -> RotationDbError:
        error = classify_connect_error(str(exc), secrets=(self._secret_password,))
        return RotationDbError(f"{what}: {error.message}", kind=error.kind)

    def _exec(self, what: str, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            with self._conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall()) if cur.description else []
        except psycopg.Error as exc:
            raise self._fail(what, exc) from None

    def current_role(self) -> str:
        return str(self._exec("reading current_user", "SELECT current_user")[0][0])

    def _verifier(self, username: str, password: str) -> str:
        import psycopg

        try:
            hashed = self._conn.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256")
        except psycopg.Error as exc:
            raise self._fail("hashing the new password", exc) from None
        return bytes(hashed).decode()

    def _role_exists(self, name: str) -> bool:
        return bool(self._exec(f"looking up role {name}", "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s",
                               (name,)))

    def set_password(self, username: str, password: str) -> None:
        from psycopg import sql

        verifier = self._verifier(username, password)
        self._exec(f"changing the password of {username}",
                   sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(username),
                                                                        sql.Literal(verifier)))

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        from psycopg import sql

        ident = sql.Identifier
        if not self._role_exists(base):
            raise RotationDbError(f"role {base} does not exist", kind="missing")
        if not self._role_exists(owner):
            self._exec(f"creating role {owner}", sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(owner)))
        else:
            self._exec(f"making {owner} NOLOGIN", sql.SQL("ALTER ROLE {} NOLOGIN").format(ident(owner)))
        if not self._role_exists(clone):  # no password yet: it cannot log in before set_password
            self._exec(f"creating role {clone}", sql.SQL("CREATE ROLE {} LOGIN").format(ident(clone)))
        else:
            self._exec(f"letting {clone} log in", sql.SQL("ALTER ROLE {} LOGIN").format(ident(clone)))
        for login in (base, clone):
            self._exec(f"granting {owner} to {login}", sql.SQL("GRANT {} TO {}").format(ident(owner), ident(login)))
        memberships = self._exec(
            f"reading the roles of {base}",
            "SELECT r.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid "
            "WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s) ORDER BY 1", (base,))
        for (role,) in memberships:
            if role in _NOT_COPIED or role == owner:
                continue
            self._exec(f"granting {role} to {clone}", sql.SQL("GRANT {} TO {}").format(ident(role), ident(clone)))
        for (statement,) in self._exec(f"reading the privileges of {base}", COPY_PRIVILEGES_SQL,
                                       {"base": base, "owner": owner}):
            self._exec(f"copying a privilege of {base} to {owner}", statement)
        self._exec(f"reassigning what {base} and {clone} own to {owner}",
                   sql.SQL("REASSIGN OWNED BY {}, {} TO {}").format(ident(base), ident(clone), ident(owner)))
        for login in (base, clone):
            self._exec(f"making {login} act as {owner}",
                       sql.SQL("ALTER ROLE {} SET role = {}").format(ident(login), sql.Literal(owner)))

    def tier_check(self, username: str, tier: str | None) -> CheckResult:
        rows = self._exec(f"reading the privileges of {username}", ROLE_FACTS_SQL, {"role": username})
        facts = _row_to_facts(username, rows[0] if rows else None)
        return check_tier(DbUser(name=username, auth="password", tier=tier), facts)  # type: ignore[arg-type]  # the tier is checked by check_tier

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection is not news
            pass


class PostgresEngine:
    def login(self, secret: DbSecret, *, ssl_root_cert: str | None, timeout: float) -> PostgresSession:
        import psycopg

        kwargs: dict[str, Any] = {
            "host": secret.host, "port": secret.port, "dbname": secret.dbname or "postgres",
            "user": secret.username, "password": secret.password,
            "sslmode": "verify-full",  # always: never a plaintext fallback, whatever the secret says
            "connect_timeout": max(2, int(timeout)), "application_name": "rdsvend-rotate", "autocommit": True,
        }
        if ssl_root_cert:
            kwargs["sslrootcert"] = ssl_root_cert
        try:
            conn = psycopg.connect(**kwargs)
        except psycopg.Error as exc:
            error = classify_connect_error(str(exc), secrets=(secret.password,))
            raise RotationDbError(f"cannot log in as {secret.username} at {secret.host}:{secret.port}: "
                                  f"{error.message}", kind=error.kind) from None
        finally:
            kwargs.clear()
        session = PostgresSession(conn, secret)
        session._exec("bounding statements", f"SET statement_timeout = {max(1000, int(timeout * 1000))}")
        return session
