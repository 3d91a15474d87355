"""The database secret, as the rotation reads it: :func:`chalicelib.engines.secret.parse_secret`,
whose refusal is this step's :class:`RotationSecretError` (one line naming the field)."""
from __future__ import annotations

from typing import Any

from chalicelib.engines.secret import DbSecret, DbSecretError
from chalicelib.engines.secret import parse_secret as parse_db_secret
from chalicelib.rotation.errors import RotationSecretError

__all__ = ["parse_secret"]


def parse_secret(text: Any, *, what: str = "the secret") -> DbSecret:
    try:
        return parse_db_secret(text, what=what)
    except DbSecretError as exc:
        raise RotationSecretError(exc.message) from None
