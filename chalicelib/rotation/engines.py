"""What a rotation needs from a database, whatever its engine: log in over TLS ``verify-full``
(never anything weaker, whatever the secret says), change a password, set up an
alternating-users pair, and judge a login's privileges by its tier.

The database work itself is the engine package's (:mod:`chalicelib.engines`); this module only
speaks the rotation's language: every database failure becomes a :class:`RotationDbError` that
names what was being done, never a password.
"""
from __future__ import annotations

from typing import Any, Protocol

from chalicelib.engines.base import ConnectParams, DbConnectError, Engine, EngineSession, TierVerdict
from chalicelib.engines.registry import UnknownEngineError
from chalicelib.engines.registry import engine_for as engine_named
from chalicelib.engines.secret import DbSecret
from chalicelib.rotation.errors import RotationDbError, RotationSecretError

__all__ = ["DbSession", "DbEngine", "engine_for", "RotationSession", "RotationEngine"]


class DbSession(Protocol):
    def current_role(self) -> str:
        """The role this session acts as (after any default ``SET ROLE``)."""

    def set_password(self, username: str, password: str) -> None:
        """Give ``username`` this password (one's own, or as an administrator)."""

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        """Administrator only: the clone exists (LOGIN), both logins are members of the NOLOGIN
        ``owner`` (created if missing) and act as it, the base's privileges and memberships
        reach the clone, objects the logins own belong to ``owner``. Idempotent."""

    def tier_check(self, username: str, tier: str | None) -> TierVerdict:
        """``db.tier``'s verdict on ``username``, read through this session."""

    def close(self) -> None: ...


class DbEngine(Protocol):
    def login(self, secret: DbSecret, *, ssl_root_cert: str | None, timeout: float) -> DbSession:
        """A session as the secret's user over TLS verify-full, or :class:`RotationDbError`."""


def _db_error(exc: DbConnectError) -> RotationDbError:
    return RotationDbError(exc.message, kind=exc.kind)


class RotationSession:
    """An engine's session, its failures as :class:`RotationDbError`."""

    def __init__(self, engine: Engine[Any], session: EngineSession[Any]) -> None:
        self._engine = engine
        self._session = session

    def current_role(self) -> str:
        try:
            return self._session.current_role()
        except DbConnectError as exc:
            raise _db_error(exc) from None

    def set_password(self, username: str, password: str) -> None:
        try:
            self._session.set_password(username, password)
        except DbConnectError as exc:
            raise _db_error(exc) from None

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        try:
            self._session.ensure_pair(base, clone, owner)
        except DbConnectError as exc:
            raise _db_error(exc) from None

    def tier_check(self, username: str, tier: str | None) -> TierVerdict:
        try:
            facts = self._session.user_facts(username)
        except DbConnectError as exc:
            raise _db_error(exc) from None
        return self._engine.judge_tier(username, tier, facts)

    def close(self) -> None:
        self._session.close()


class RotationEngine:
    def __init__(self, engine: Engine[Any]) -> None:
        self._engine = engine

    def login(self, secret: DbSecret, *, ssl_root_cert: str | None, timeout: float) -> RotationSession:
        params = ConnectParams(host=secret.host, port=secret.port, dbname=secret.dbname or "",
                               user=secret.username, password=secret.password, sslrootcert=ssl_root_cert,
                               connect_timeout=max(2, int(timeout)), application_name="rdsvend-rotate")
        try:
            session = self._engine.connect(params)
        except DbConnectError as exc:
            raise RotationDbError(f"cannot log in as {secret.username} at {secret.host}:{secret.port}: "
                                  f"{exc.message}", kind=exc.kind) from None
        return RotationSession(self._engine, session)


def engine_for(secret: DbSecret) -> DbEngine:
    try:
        return RotationEngine(engine_named(secret.engine))
    except UnknownEngineError:
        raise RotationSecretError(f"engine '{secret.engine}' is not supported") from None
