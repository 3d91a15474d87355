"""Ending every session of a db user when no live grant remains for it.

A database cannot tell which token opened a session, so the unit is the (database, db user):
its sessions are listed and ended through the engine of its family (:mod:`chalicelib.engines`:
PostgreSQL ``pg_terminate_backend``; the MySQL family ``KILL CONNECTION``, or RDS's
``mysql.rds_kill`` for a master user without SUPER), logged in with the administrator DSN the
canary already has for that endpoint (``RDSVEND_CANARY_ADMIN_DSN``,
``RDSVEND_CANARY_MYSQL_ADMIN_DSN``). An endpoint no administrator DSN covers cannot have its
sessions ended: that is an error the sweep reports, never a silent success.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from chalicelib.engines.base import DbConnectError, SessionInfo
from chalicelib.engines.registry import family_of
from chalicelib.errors import RdsvendError
from chalicelib.policy.model import Database

__all__ = ["SessionAdmin", "AdminSessionEnder", "SessionsUnavailableError"]


class SessionsUnavailableError(RdsvendError):
    """A db user's sessions could not be ended (no administrator for its endpoint, or the
    database refused or could not be reached). The message never holds a password."""


class _AdminLogin(Protocol):
    def sessions_of(self, user: str) -> tuple[SessionInfo, ...]: ...

    def end_sessions(self, user: str) -> int: ...

    def close(self) -> None: ...


class SessionAdmin(Protocol):
    """An engine's administrator (:class:`chalicelib.engines.postgres.PostgresAdmin`,
    :class:`chalicelib.engines.mysql.MysqlAdmin`)."""

    def covers(self, host: str | None, port: int | None) -> bool: ...

    def session(self, timeout: float) -> Any: ...


class AdminSessionEnder:
    """:class:`chalicelib.grants.service.SessionEnder` through the administrators' logins;
    ``admins`` maps an engine family (``postgres``, ``mysql``) to its administrator."""

    def __init__(self, *, resolve: Callable[[Database], tuple[str, int]], admins: Mapping[str, SessionAdmin],
                 timeout: float = 10.0) -> None:
        self._resolve = resolve
        self._admins = dict(admins)
        self._timeout = timeout

    def end_sessions(self, database: Database, db_user: str) -> list[str]:
        host, port = self._resolve(database)
        admin = self._admins.get(family_of(database.engine))
        if admin is None or not admin.covers(host, port):
            raise SessionsUnavailableError(f"no administrator connection covers '{database.name}' ({host}:{port})")
        try:
            login: _AdminLogin = admin.session(self._timeout)
            try:
                found = login.sessions_of(db_user)
                if found:
                    login.end_sessions(db_user)
                return [str(info.id) for info in found]
            finally:
                login.close()
        except DbConnectError as exc:  # its message is the driver's, with any password removed
            raise SessionsUnavailableError(f"cannot end sessions on '{database.name}': {exc.kind}: {exc}") from None
