"""The database secret, as the rotation reads it: :func:`chalicelib.engines.secret.parse_secret`,
whose refusal is this step's :class:`RotationSecretError` (one line naming the field)."""
from __future__ import annotations

from typing import Any

from chalicelib.engines.secret import DbSecret, DbSecretError
from chalicelib.engines.secret import parse_secret as parse_db_secret
from chalicelib.rotation.errors import RotationSecretError

__all__ = ["parse_secret", "login_fields", "first_difference"]


def parse_secret(text: Any, *, what: str = "the secret") -> DbSecret:
    try:
        return parse_db_secret(text, what=what)
    except DbSecretError as exc:
        raise RotationSecretError(exc.message) from None


def login_fields(secret: DbSecret) -> dict[str, Any]:
    """What names a login: engine family, host (as DNS compares it), port and username."""
    return {"engine": secret.family, "host": secret.host.lower().rstrip("."), "port": secret.port,
            "username": secret.username}


def first_difference(secret: DbSecret, other: DbSecret, *, username: bool = True) -> tuple[str, Any, Any] | None:
    """The first of engine, host, port (and username) in which ``secret`` differs from ``other``,
    as ``(field, secret's, other's)``; None when both name the same server (and login)."""
    mine, theirs = login_fields(secret), login_fields(other)
    for name in ("engine", "host", "port", "username") if username else ("engine", "host", "port"):
        if mine[name] != theirs[name]:
            return name, mine[name], theirs[name]
    return None
