"""Connection strings in a vend answer, per engine family. Never the token.

- PostgreSQL: a libpq keyword/value string, ``sslmode=verify-full``.
- MySQL family (``mysql``, ``mariadb``, Aurora MySQL): a ``mysql://USER@HOST:PORT/DBNAME``
  URI with ``?ssl-mode=VERIFY_IDENTITY`` (what MySQL Shell and the connectors call full
  verification), user and database percent-encoded so that a name holding ``@ : / ? # %``
  or spaces cannot change the URI's meaning. The answer then also says which client auth
  plugin carries the token: ``mysql_clear_password`` (RDS reads the token in clear, over TLS).
"""
from __future__ import annotations

from urllib.parse import quote

__all__ = ["MYSQL_FAMILY", "MYSQL_AUTH_PLUGIN", "MYSQL_SSL_MODE", "is_mysql_family", "build_dsn",
           "libpq_dsn", "mysql_dsn", "answer_fields"]

#: Engines that speak the MySQL protocol (Aurora MySQL is a ``cluster`` of one of them).
MYSQL_FAMILY = frozenset({"mysql", "mariadb"})
MYSQL_AUTH_PLUGIN = "mysql_clear_password"
MYSQL_SSL_MODE = "VERIFY_IDENTITY"


def is_mysql_family(engine: str | None) -> bool:
    return engine in MYSQL_FAMILY


def libpq_dsn(host: str, port: int, dbname: str | None, user: str) -> str:
    """A libpq connection string without any password."""
    parts = [f"host={host}", f"port={port}"]
    if dbname:
        parts.append(f"dbname={dbname}")
    parts += [f"user={user}", "sslmode=verify-full"]
    return " ".join(parts)


def _host_part(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def mysql_dsn(host: str, port: int, dbname: str | None, user: str) -> str:
    """``mysql://USER@HOST:PORT/DBNAME?ssl-mode=VERIFY_IDENTITY`` (no password, names encoded)."""
    path = "/" + quote(dbname, safe="") if dbname else "/"
    return f"mysql://{quote(user, safe='')}@{_host_part(host)}:{int(port)}{path}?ssl-mode={MYSQL_SSL_MODE}"


def build_dsn(host: str, port: int, dbname: str | None, user: str, engine: str = "postgres") -> str:
    """The ``dsn`` of a vend answer for ``engine``; it never holds the token."""
    if is_mysql_family(engine):
        return mysql_dsn(host, port, dbname, user)
    return libpq_dsn(host, port, dbname, user)


def answer_fields(engine: str) -> dict[str, str]:
    """Fields a vend answer adds for ``engine``: the auth plugin for the MySQL family."""
    return {"auth_plugin": MYSQL_AUTH_PLUGIN} if is_mysql_family(engine) else {}
