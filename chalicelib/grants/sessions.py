"""Ending every session of a db user when no live grant remains for it.

A database cannot tell which token opened a session, so the unit is the (database, db user):
its sessions are ended through the administrator connection the canary already has for that
endpoint (``RDSVEND_CANARY_ADMIN_DSN`` for PostgreSQL: ``pg_terminate_backend``;
``RDSVEND_CANARY_MYSQL_ADMIN_DSN`` for the MySQL family: ``KILL CONNECTION``). An endpoint no
administrator DSN covers cannot have its sessions ended: that is an error the sweep reports,
never a silent success.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from chalicelib.canary.checks_db import DbConnectError
from chalicelib.errors import RdsvendError
from chalicelib.policy.model import Database

__all__ = ["Admin", "AdminSessionEnder", "SessionsUnavailableError"]


class SessionsUnavailableError(RdsvendError):
    """A db user's sessions could not be ended (no administrator for its endpoint, or the
    database refused or could not be reached). The message never holds a password."""


class Admin(Protocol):
    def covers(self, host: str | None, port: int | None) -> bool: ...

    def end_sessions(self, user: str, timeout: float) -> list[str]: ...


class AdminSessionEnder:
    """:class:`chalicelib.grants.service.SessionEnder` through the administrators' connections."""

    def __init__(self, *, resolve: Callable[[Database], tuple[str, int]], postgres: Admin | None,
                 mysql: Admin | None, timeout: float = 10.0) -> None:
        self._resolve = resolve
        self._postgres = postgres
        self._mysql = mysql
        self._timeout = timeout

    def end_sessions(self, database: Database, db_user: str) -> list[str]:
        host, port = self._resolve(database)
        admin = self._postgres if database.engine == "postgres" else self._mysql
        if admin is None or not admin.covers(host, port):
            raise SessionsUnavailableError(f"no administrator connection covers '{database.name}' ({host}:{port})")
        try:
            return admin.end_sessions(db_user, self._timeout)
        except DbConnectError as exc:  # its message is the driver's, with any password removed
            raise SessionsUnavailableError(f"cannot end sessions on '{database.name}': {exc.kind}: {exc}") from None
