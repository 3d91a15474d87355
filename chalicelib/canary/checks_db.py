"""Database-side checks: ``db.connect``, ``db.rds_iam``, ``db.auth_conflict``, ``db.tier``.

``db.connect`` opens a TLS ``verify-full`` connection with a freshly signed token (psycopg 3,
libpq's ``connect_timeout``) and records ``latency_ms``. The role checks read the catalogs
(``pg_roles``, ``pg_auth_members`` through nested grants, ``pg_has_role``, ``pg_namespace``),
which every role may read: they run on the target user's own connection, or on an
administrator's connection when the canary has one (see :mod:`chalicelib.canary.runner`).
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.canary.model import CheckResult, errored, failed, passed, skipped
from chalicelib.policy.model import DbUser

__all__ = [
    "ConnectParams",
    "DbConnectError",
    "RoleFacts",
    "DbSession",
    "DbConnector",
    "PsycopgConnector",
    "ROLE_FACTS_SQL",
    "classify_connect_error",
    "check_connect",
    "check_rds_iam",
    "check_auth_conflict",
    "check_tier",
]


@dataclass(frozen=True)
class ConnectParams:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    sslmode: str = "verify-full"
    sslrootcert: str | None = None
    connect_timeout: int = 10
    application_name: str = "rdsvend-canary"
    #: libpq's hostaddr: the IP to reach while TLS and the token still name ``host``
    hostaddr: str | None = None


class DbConnectError(Exception):
    """A connection attempt failed. ``kind``: auth, tls, refused, timeout, missing, other.

    The message is libpq's first line with any password removed.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class RoleFacts:
    """What the catalogs say about one role (all through nested grants)."""

    role: str
    exists: bool
    superuser: bool = False
    createrole: bool = False
    createdb: bool = False
    rds_iam_exists: bool = True
    rds_ad_exists: bool = True
    rds_iam_path: tuple[str, ...] | None = None  # e.g. ("app_login", "rds_iam"); None: not a member
    rds_ad_path: tuple[str, ...] | None = None
    # Roles the user is a member of that carry superuser/createrole/createdb: (role, attribute)
    inherited: tuple[tuple[str, str], ...] = ()
    owned_schemas: tuple[str, ...] = ()

    @property
    def in_rds_iam(self) -> bool:
        return self.rds_iam_path is not None

    @property
    def in_rds_ad(self) -> bool:
        return self.rds_ad_path is not None


class DbSession(Protocol):
    def role_facts(self, role: str) -> RoleFacts: ...

    def close(self) -> None: ...


class DbConnector(Protocol):
    def connect(self, params: ConnectParams) -> DbSession:
        """Open a session or raise :class:`DbConnectError`."""


# One round trip: the role, its memberships through nested grants (with the path that leads to
# rds_iam / rds_ad, cross-checked by pg_has_role), inherited attributes and owned schemas.
ROLE_FACTS_SQL = """
WITH RECURSIVE target AS (
    SELECT oid, rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_catalog.pg_roles
    WHERE rolname = %(role)s
), chain(roleid, path) AS (
    SELECT m.roleid, ARRAY[r.rolname::text]
    FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
    WHERE m.member = (SELECT oid FROM target)
  UNION ALL
    SELECT m.roleid, c.path || r.rolname::text
    FROM chain c
    JOIN pg_catalog.pg_auth_members m ON m.member = c.roleid
    JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
    WHERE NOT (r.rolname::text = ANY (c.path)) AND cardinality(c.path) < 32
)
SELECT
    t.rolname, t.rolsuper, t.rolcreaterole, t.rolcreatedb,
    EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_iam') AS rds_iam_exists,
    EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_ad') AS rds_ad_exists,
    CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_iam')
         THEN pg_catalog.pg_has_role(t.oid, 'rds_iam', 'MEMBER') END AS has_rds_iam,
    CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_ad')
         THEN pg_catalog.pg_has_role(t.oid, 'rds_ad', 'MEMBER') END AS has_rds_ad,
    (SELECT c.path FROM chain c WHERE c.path[cardinality(c.path)] = 'rds_iam'
     ORDER BY cardinality(c.path) LIMIT 1) AS rds_iam_path,
    (SELECT c.path FROM chain c WHERE c.path[cardinality(c.path)] = 'rds_ad'
     ORDER BY cardinality(c.path) LIMIT 1) AS rds_ad_path,
    (SELECT coalesce(array_agg(DISTINCT r.rolname::text || ':' || a.attr), '{}')
     FROM chain c JOIN pg_catalog.pg_roles r ON r.oid = c.roleid
     CROSS JOIN LATERAL (VALUES ('superuser', r.rolsuper), ('createrole', r.rolcreaterole),
                                ('createdb', r.rolcreatedb)) AS a(attr, has)
     WHERE a.has) AS inherited,
    (SELECT coalesce(array_agg(n.nspname::text ORDER BY n.nspname), '{}')
     FROM pg_catalog.pg_namespace n
     WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
       AND (n.nspowner = t.oid
            OR n.nspowner IN (SELECT roleid FROM chain)
            OR (n.nspowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'pg_database_owner')
                AND (SELECT datdba FROM pg_catalog.pg_database WHERE datname = current_database())
                    IN (SELECT t.oid UNION SELECT roleid FROM chain)))) AS owned_schemas
FROM target t
"""


def _row_to_facts(role: str, row: Any) -> RoleFacts:
    if row is None:
        return RoleFacts(role=role, exists=False)
    (_, superuser, createrole, createdb, iam_exists, ad_exists, has_iam, has_ad, iam_path, ad_path,
     inherited, owned) = row
    # pg_has_role is the authority; the path only explains it. A superuser "has" every role.
    iam = tuple(iam_path) if iam_path else (("rds_iam",) if has_iam and not superuser else None)
    ad = tuple(ad_path) if ad_path else (("rds_ad",) if has_ad and not superuser else None)
    pairs = tuple(tuple(item.rsplit(":", 1)) for item in sorted(inherited or ()))
    return RoleFacts(role=role, exists=True, superuser=bool(superuser), createrole=bool(createrole),
                     createdb=bool(createdb), rds_iam_exists=bool(iam_exists),
                     rds_ad_exists=bool(ad_exists), rds_iam_path=iam, rds_ad_path=ad,
                     inherited=pairs, owned_schemas=tuple(owned or ()))


_FIRST_LINE = re.compile(r"[^\n]*")


def classify_connect_error(text: str, *, secrets: tuple[str, ...] = ()) -> DbConnectError:
    """Turn libpq's message into a :class:`DbConnectError` (kind + one clean line)."""
    clean = text
    for secret in secrets:
        if secret:
            clean = clean.replace(secret, "<redacted>")
    lines = [ln.strip() for ln in clean.splitlines() if ln.strip()]
    # libpq prefixes "connection failed: connection to server at ... failed:"; keep the cause.
    message = " ".join(lines)[:400] if lines else "connection failed"
    low = clean.lower()
    if "authentication failed" in low or "password authentication" in low or "pg_hba.conf" in low:
        kind = "auth"
    elif "timeout expired" in low or "timed out" in low:
        kind = "timeout"
    elif "certificate" in low or "ssl" in low or "tls" in low:
        kind = "tls"
    elif "connection refused" in low or "could not translate host name" in low or "no route" in low:
        kind = "refused"
    elif "does not exist" in low:
        kind = "missing"
    else:
        kind = "other"
    return DbConnectError(kind, message)


class _PsycopgSession:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def role_facts(self, role: str) -> RoleFacts:
        with self._conn.cursor() as cur:
            cur.execute(ROLE_FACTS_SQL, {"role": role})
            return _row_to_facts(role, cur.fetchone())

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection is not news
            pass


class PsycopgConnector:
    """Real connections through psycopg 3 (libpq). Autocommit, read-only catalog queries."""

    def connect(self, params: ConnectParams) -> _PsycopgSession:
        import psycopg

        kwargs: dict[str, Any] = {
            "host": params.host, "port": params.port, "dbname": params.dbname, "user": params.user,
            "password": params.password, "sslmode": params.sslmode,
            "connect_timeout": max(2, int(params.connect_timeout)),
            "application_name": params.application_name, "autocommit": True,
        }
        if params.sslrootcert:
            kwargs["sslrootcert"] = params.sslrootcert
        if params.hostaddr:
            kwargs["hostaddr"] = params.hostaddr
        try:
            conn = psycopg.connect(**kwargs)
        except psycopg.Error as exc:
            raise classify_connect_error(str(exc), secrets=(params.password,)) from None
        try:
            # Bound every statement too: a server that accepts and then hangs costs no more.
            conn.execute(f"SET statement_timeout = {max(1000, int(params.connect_timeout) * 1000)}")
        except psycopg.Error as exc:
            conn.close()
            raise classify_connect_error(str(exc), secrets=(params.password,)) from None
        return _PsycopgSession(conn)


def connect_timed(connector: DbConnector, params: ConnectParams) -> tuple[DbSession, float]:
    started = time.perf_counter()
    session = connector.connect(params)
    return session, round((time.perf_counter() - started) * 1000.0, 1)


# ----------------------------------------------------------------------------------- verdicts

_CONNECT_FIX = {
    "auth": ("the token was refused. In order: IAM auth enabled on the instance (rds.iam_auth_enabled), "
             "the user is in rds_iam and not rds_ad (db.rds_iam, db.auth_conflict), the signer may "
             "rds-db:connect on the exact dbuser ARN built from the resource id "
             "(iam.signer_allows, org.scp_allows), the token was signed for this exact host, port, "
             "user and region, and the signer's clock is right"),
    "tls": ("the server certificate did not verify against the CA bundle: use the RDS global bundle "
            "(rds-global-bundle.pem) or set canary.ssl_root_cert, and connect by the name on the "
            "certificate (the RDS endpoint, not an IP or an alias)"),
    "refused": ("nothing accepts connections there: check host and port, the security group and "
                "network ACLs from the canary's subnets, and that the database is running"),
    "timeout": ("no answer in time: check security groups, routes and NAT from the canary's "
                "subnets to the database, and the database's load"),
    "missing": "create the database or role named in the message, or fix dbname in the policy",
    "other": "read the server's message above; check the database's log for the same minute",
}


def check_connect(*, host: str, port: int, user: str, error: DbConnectError | None,
                  latency_ms: float | None, tls: Mapping[str, Any]) -> CheckResult:
    cid = "db.connect"
    details: dict[str, Any] = {"host": host, "port": port, "user": user, **tls}
    if error is None:
        details["latency_ms"] = latency_ms
        return passed(cid, f"connected to {host}:{port} as {user} with a fresh token "
                      f"(TLS {tls.get('sslmode')}, {latency_ms} ms)", **details)
    details["error_kind"] = error.kind
    if error.kind == "timeout":
        return errored(cid, f"no answer from {host}:{port} within the connect timeout: "
                       f"{error.message}", _CONNECT_FIX["timeout"], **details)
    return failed(cid, f"could not connect to {host}:{port} as {user}: {error.message}",
                  _CONNECT_FIX[error.kind], **details)


def _no_facts(cid: str, facts: RoleFacts | DbConnectError | None, why: str) -> CheckResult | None:
    if facts is None:
        return skipped(cid, f"not checked: {why}")
    if isinstance(facts, DbConnectError):
        return errored(cid, f"could not read the catalogs: {facts.message}", **{"error_kind": facts.kind})
    return None


def check_rds_iam(user: str, facts: RoleFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.rds_iam"
    early = _no_facts(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, RoleFacts)
    if not facts.exists:
        return failed(cid, f"role {user} does not exist in the database",
                      f"CREATE USER {user} WITH LOGIN; GRANT rds_iam TO {user};", role=user)
    if not facts.rds_iam_exists:
        return failed(cid, "the rds_iam role does not exist: this server does not do RDS IAM "
                      "authentication", "connect the policy to an RDS PostgreSQL instance",
                      role=user)
    if facts.in_rds_iam:
        path = " -> ".join((user, *(facts.rds_iam_path or ())))
        return passed(cid, f"{user} is a member of rds_iam ({path})", role=user,
                      path=list(facts.rds_iam_path or ()))
    return failed(cid, f"{user} is not a member of rds_iam: RDS answers every token with "
                  f"\"PAM authentication failed for user \\\"{user}\\\"\"",
                  f"GRANT rds_iam TO {user};", role=user)


def check_auth_conflict(user: str, facts: RoleFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.auth_conflict"
    early = _no_facts(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, RoleFacts)
    if not facts.exists:
        return skipped(cid, f"not checked: role {user} does not exist")
    if not facts.in_rds_ad:
        return passed(cid, f"{user} is not in rds_ad (directly or through nested roles)", role=user)
    path = list(facts.rds_ad_path or ())
    direct = len(path) == 1
    via = "directly" if direct else "through " + " -> ".join([user, *path])
    grant = path[0]
    return failed(cid, f"{user} is in both rds_iam and rds_ad ({via}): RDS allows one "
                  "authentication method per user, and IAM logins fail with \"PAM authentication "
                  "failed for user\"",
                  f"REVOKE {grant} FROM {user};" + ("" if direct else
                                                   f" (rds_ad comes in through role {grant})"),
                  role=user, path=path)


def check_tier(user: DbUser, facts: RoleFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.tier"
    if user.tier is None:
        return skipped(cid, f"no tier declared for {user.name}")
    early = _no_facts(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, RoleFacts)
    name = user.name
    if not facts.exists:
        return skipped(cid, f"not checked: role {name} does not exist")
    problems: list[str] = []
    fixes: list[str] = []
    if facts.superuser:
        problems.append("is superuser")
        fixes.append(f"ALTER ROLE {name} NOSUPERUSER;")
    if user.tier == "service-user":
        if facts.createrole:
            problems.append("can create roles")
            fixes.append(f"ALTER ROLE {name} NOCREATEROLE;")
        if facts.createdb:
            problems.append("can create databases")
            fixes.append(f"ALTER ROLE {name} NOCREATEDB;")
        for role, attr in facts.inherited:
            problems.append(f"has {attr} through role {role}")
            fixes.append(f"REVOKE {role} FROM {name};")
        for schema in facts.owned_schemas:
            problems.append(f"owns schema {schema}")
            fixes.append(f"ALTER SCHEMA {schema} OWNER TO <an admin role>;")
    else:  # service-admin: may own and create, never superuser
        for role, attr in facts.inherited:
            if attr == "superuser":
                problems.append(f"is superuser through role {role}")
                fixes.append(f"REVOKE {role} FROM {name};")
    details = {"role": name, "tier": user.tier, "superuser": facts.superuser,
               "createrole": facts.createrole, "createdb": facts.createdb,
               "inherited": [list(p) for p in facts.inherited],
               "owned_schemas": list(facts.owned_schemas)}
    if problems:
        return failed(cid, f"{name} ({user.tier}) " + ", ".join(problems),
                      " ".join(dict.fromkeys(fixes)), **details)
    return passed(cid, f"{name}'s privileges fit tier {user.tier}", **details)
