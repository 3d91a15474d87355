"""Aurora DSQL: a PostgreSQL-compatible engine whose logins are IAM tokens only.

DSQL speaks PostgreSQL's protocol, so a login is the PostgreSQL family's (psycopg 3, TLS
verify-full: DSQL serves a public CA's certificate, so ``sslrootcert=system`` unless a bundle is
configured), its errors are classified the same way and its roles' facts read from the same
catalogs. What only DSQL has: the IAM mapping of a database role (``AWS IAM GRANT``), read from
``sys.iam_pg_role_mappings`` (:meth:`DsqlEngine.role_mappings`).
"""
from __future__ import annotations

from chalicelib.engines.base import EngineSession
from chalicelib.engines.postgres import PostgresEngine, PostgresSession

__all__ = ["DsqlEngine", "MAPPINGS_QUERY", "SYSTEM_ROOTS"]

#: The IAM principals (ARNs) a database role is mapped to, as DSQL shows them (no unique id).
MAPPINGS_QUERY = "SELECT arn FROM sys.iam_pg_role_mappings WHERE pg_role_name = %s ORDER BY arn"
#: libpq's name for the system's trusted roots: DSQL's certificates chain to a public CA.
SYSTEM_ROOTS = "system"


class DsqlEngine(PostgresEngine):
    """The Aurora DSQL family: PostgreSQL's login, classification and catalogs, plus mappings."""

    family: str = "dsql"
    default_dbname: str = "postgres"

    def role_mappings(self, session: EngineSession[object], role: str) -> list[str]:
        """The ARNs ``role`` is mapped to (``AWS IAM GRANT``); :class:`DbConnectError` on failure."""
        if not isinstance(session, PostgresSession):
            raise TypeError("a DSQL session is a PostgreSQL session")
        rows = session.execute(f"reading the IAM mappings of {role}", MAPPINGS_QUERY, (role,))
        return [str(row[0]) for row in rows]
