"""Turning a vended token into a PostgreSQL connection: libpq parameters, environment, psycopg.

TLS is ``verify-full`` (what the service answers) against ``PGSSLROOTCERT`` when it is set,
else, for an Aurora DSQL cluster (whose answer says ``ssl_root_cert: system``: DSQL serves
certificates of a public CA), libpq's ``sslrootcert=system`` (the system's trusted roots, libpq
16 and later), else the RDS CA bundle shipped in the package (``rdsvend/data/rds-global-bundle.pem``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rdsvend.api import VendedToken
from rdsvend.errors import require_extra
from rdsvend.mysql import connect as connect_mysql
from rdsvend.mysql import is_mysql_family
from rdsvend.trust import bundled_ca_path, ssl_root_cert_path

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from rdsvend.tokens import TokenClient

__all__ = ["bundled_ca_path", "ssl_root_cert_path", "connection_params", "conninfo", "libpq_env", "connect"]


def connection_params(vended: VendedToken, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``psycopg.connect`` (libpq names), password included; no
    ``dbname`` when the service names none (libpq then uses the login's default database)."""
    params: dict[str, Any] = {"host": vended.host, "port": vended.port}
    if vended.dbname is not None:
        params["dbname"] = vended.dbname
    params.update({
        "user": vended.db_user,
        "password": vended.token,
        "sslmode": vended.sslmode or "verify-full",
        "sslrootcert": ssl_root_cert_path(environ, vended),
    })
    return params


def conninfo(vended: VendedToken, environ: Mapping[str, str] | None = None) -> str:
    """A libpq connection string with the password (psycopg's ``make_conninfo`` when installed)."""
    params = connection_params(vended, environ)
    try:
        from psycopg.conninfo import make_conninfo
    except ImportError:
        return " ".join(f"{key}={_conninfo_value(str(value))}" for key, value in params.items())
    return make_conninfo(**params)


def _conninfo_value(value: str) -> str:
    """libpq's quoting: single quotes around values that are empty or hold space, ``'`` or ``\\``."""
    if value and not any(ch.isspace() or ch in "'\\" for ch in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def libpq_env(vended: VendedToken, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSSLMODE PGSSLROOTCERT`` for a child process.

    Without a ``dbname`` there is no ``PGDATABASE``: see :func:`child_env`."""
    params = connection_params(vended, environ)
    env = {
        "PGHOST": params["host"],
        "PGPORT": str(params["port"]),
        "PGUSER": params["user"],
        "PGPASSWORD": params["password"],
        "PGSSLMODE": params["sslmode"],
        "PGSSLROOTCERT": params["sslrootcert"],
    }
    if "dbname" in params:
        env["PGDATABASE"] = params["dbname"]
    return env


def child_env(vended: VendedToken, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with :func:`libpq_env` applied; an inherited ``PGDATABASE`` is dropped when
    the service names no database, so libpq connects where the service means it to."""
    env = {**environ, **libpq_env(vended, environ)}
    if vended.dbname is None:
        env.pop("PGDATABASE", None)
    return env


def connect(client: TokenClient, database: str, db_user: str, **kwargs: Any) -> psycopg.Connection:
    """``psycopg.connect`` with a current token from ``client``; ``kwargs`` override/extend.

    For a MySQL-family database (``engine`` mysql or mariadb) it returns a PyMySQL connection
    instead (TLS verified, cleartext auth): see :func:`rdsvend.mysql.connect`.
    """
    vended = client.get(database, db_user)
    if is_mysql_family(vended.engine):
        return connect_mysql(client, database, db_user, **kwargs)  # type: ignore[no-any-return]  # PyMySQL ships no types
    require_extra("rdsvend.connect() for PostgreSQL", "psycopg", "psycopg")
    import psycopg

    params = connection_params(vended)
    params.update(kwargs)
    return psycopg.connect(**params)
