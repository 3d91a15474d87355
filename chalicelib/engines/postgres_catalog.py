"""PostgreSQL's catalogs, read and judged (pure: SQL text, rows in, facts and verdicts out).

The role facts (``pg_roles``, ``pg_auth_members`` through nested grants, ``pg_has_role``,
``pg_namespace``) are readable by every role, so a login can read its own; the tier rules say
what a service user or a service admin may hold. Used by :mod:`chalicelib.engines.postgres`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.engines.base import DbConnectError, TierVerdict, redact

__all__ = ["RoleFacts", "ROLE_FACTS_SQL", "COPY_PRIVILEGES_SQL", "NOT_COPIED", "SESSIONS_SQL", "END_SESSIONS_SQL",
           "SIGNAL_SESSIONS_SQL", "SESSIONS_LEFT_SQL", "END_SESSIONS_WAIT_MS", "TERMINATE_TIMEOUT_FROM",
           "facts_from_row", "classify_connect_error", "judge_tier"]


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


def facts_from_row(role: str, row: Any) -> RoleFacts:
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
NOT_COPIED = ("rds_iam", "rds_ad")


#: the other sessions of one user, and ending them (pg_terminate_backend: a superuser, or a member
#: of pg_signal_backend, or the same role)
SESSIONS_SQL = """
SELECT pid, usename::text, host(client_addr), application_name, state
  FROM pg_catalog.pg_stat_activity
 WHERE usename = %(user)s AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
 ORDER BY pid
"""
#: how long ending a user's sessions waits for them to be gone (the server waits for each from
#: PostgreSQL 14; before it, rdsvend waits for them all)
END_SESSIONS_WAIT_MS = 5000
#: PostgreSQL 14 (server_version_num 140000) added pg_terminate_backend's timeout
TERMINATE_TIMEOUT_FROM = 140000
#: PostgreSQL 14 and later: each session is signalled and waited for (``wait_ms``) by the server
END_SESSIONS_SQL = """
SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, %(wait_ms)s::bigint))
  FROM pg_catalog.pg_stat_activity
 WHERE usename = %(user)s AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
"""
#: before PostgreSQL 14 pg_terminate_backend(pid) only signals: the sessions signalled, by pid and
#: start (a pid the server reuses meanwhile is another session), for SESSIONS_LEFT_SQL to wait for
SIGNAL_SESSIONS_SQL = """
SELECT pid, backend_start, pg_catalog.pg_terminate_backend(pid)
  FROM pg_catalog.pg_stat_activity
 WHERE usename = %(user)s AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
"""
#: how many of the signalled sessions (``pids``/``starts``, in pairs) are still there
SESSIONS_LEFT_SQL = """
SELECT count(*)
  FROM pg_catalog.pg_stat_activity a
  JOIN unnest(%(pids)s::int[], %(starts)s::timestamptz[]) AS s(pid, started)
    ON a.pid = s.pid AND a.backend_start = s.started
"""


def classify_connect_error(text: str, *, secrets: tuple[str, ...] = ()) -> DbConnectError:
    """Turn libpq's message into a :class:`DbConnectError` (kind + one clean line)."""
    clean = redact(text, secrets)
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




def _service_user_problems(name: str, facts: RoleFacts) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if facts.createrole:
        found.append(("can create roles", f"ALTER ROLE {name} NOCREATEROLE;"))
    if facts.createdb:
        found.append(("can create databases", f"ALTER ROLE {name} NOCREATEDB;"))
    found += [(f"has {attr} through role {role}", f"REVOKE {role} FROM {name};") for role, attr in facts.inherited]
    found += [(f"owns schema {schema}", f"ALTER SCHEMA {schema} OWNER TO <an admin role>;")
              for schema in facts.owned_schemas]
    return found


def judge_tier(name: str, tier: str | None, facts: RoleFacts) -> TierVerdict:
    """A service-user is not superuser, creates no roles or databases and owns no schemas (nor
    through a role it belongs to); a service-admin is never superuser."""
    if tier is None:
        return TierVerdict("skip", f"no tier declared for {name}")
    if not facts.exists:
        return TierVerdict("skip", f"not checked: role {name} does not exist")
    found: list[tuple[str, str]] = []
    if facts.superuser:
        found.append(("is superuser", f"ALTER ROLE {name} NOSUPERUSER;"))
    if tier == "service-user":
        found += _service_user_problems(name, facts)
    else:  # service-admin: may own and create, never superuser
        found += [(f"is superuser through role {role}", f"REVOKE {role} FROM {name};")
                  for role, attr in facts.inherited if attr == "superuser"]
    details: dict[str, Any] = {"role": name, "tier": tier, "superuser": facts.superuser,
                               "createrole": facts.createrole, "createdb": facts.createdb,
                               "inherited": [list(p) for p in facts.inherited],
                               "owned_schemas": list(facts.owned_schemas)}
    if found:
        return TierVerdict("fail", f"{name} ({tier}) " + ", ".join(p for p, _ in found),
                           " ".join(dict.fromkeys(f for _, f in found)), details)
    return TierVerdict("pass", f"{name}'s privileges fit tier {tier}", "", details)
