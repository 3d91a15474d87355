"""What a rotation needs from a database, whatever its engine: log in over TLS ``verify-full``
(never anything weaker, whatever the secret says), change a password, set up an
alternating-users pair, and read the facts a tier is judged on.

:func:`engine_for` picks the adapter by the secret's engine family; adapters import their
driver lazily.
"""
from __future__ import annotations

from typing import Protocol

from chalicelib.canary.model import CheckResult
from chalicelib.rotation.errors import RotationSecretError
from chalicelib.rotation.secret import DbSecret

__all__ = ["DbSession", "DbEngine", "engine_for", "owner_role_of", "clone_of", "base_of", "CLONE_SUFFIX",
           "OWNER_SUFFIX"]

CLONE_SUFFIX = "_clone"
OWNER_SUFFIX = "_owner"


def clone_of(base: str) -> str:
    return base + CLONE_SUFFIX


def base_of(username: str) -> str:
    return username[: -len(CLONE_SUFFIX)] if username.endswith(CLONE_SUFFIX) else username


def owner_role_of(base: str) -> str:
    """The NOLOGIN role an alternating pair's objects and privileges belong to."""
    return base + OWNER_SUFFIX


class DbSession(Protocol):
    def current_role(self) -> str:
        """The role this session acts as (after any default ``SET ROLE``)."""

    def set_password(self, username: str, password: str) -> None:
        """Give ``username`` this password (one's own, or as an administrator)."""

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        """Administrator only: the clone exists (LOGIN), both logins are members of the NOLOGIN
        ``owner`` (created if missing) and act as it, the base's privileges and memberships
        reach the clone, objects the logins own belong to ``owner``. Idempotent."""

    def tier_check(self, username: str, tier: str | None) -> CheckResult:
        """``db.tier``'s verdict on ``username``, read through this session."""

    def close(self) -> None: ...


class DbEngine(Protocol):
    def login(self, secret: DbSecret, *, ssl_root_cert: str | None, timeout: float) -> DbSession:
        """A session as the secret's user over TLS verify-full, or :class:`RotationDbError`."""


def engine_for(secret: DbSecret) -> DbEngine:
    family = secret.family
    if family == "postgres":
        from chalicelib.rotation.postgres import PostgresEngine

        return PostgresEngine()
    if family == "mysql":
        from chalicelib.rotation.mysql import MysqlEngine

        return MysqlEngine()
    raise RotationSecretError(f"engine '{secret.engine}' is not supported")
