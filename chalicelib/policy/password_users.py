"""The keys of an ``auth: password`` user: ``secret`` (a Secrets Manager secret ARN) and
``rotation`` (``single-user`` | ``alternating-users``).

Such a user is never vended a token: Secrets Manager holds its password and the ``rotate``
function changes it. The loader calls :func:`password_settings` for every user.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.aws.arn import SECRET_ARN, secret_arn_parts
from chalicelib.errors import PolicyLoadError
from chalicelib.policy.model import partition_of_region

__all__ = ["SECRET_ARN", "ROTATIONS", "PASSWORD_KEYS", "password_settings", "secret_arn_parts"]

ROTATIONS = ("single-user", "alternating-users")
PASSWORD_KEYS = frozenset({"secret", "rotation"})


def password_settings(spec: Mapping[str, Any], field: str, auth: str,
                      fail: Callable[..., PolicyLoadError]) -> tuple[str | None, str | None]:
    """``(secret, rotation)`` of one user, or a load error naming ``field``.

    ``fail(message, field=...)`` builds the loader's error (file and database in ``field``).
    """
    secret = spec.get("secret")
    rotation = spec.get("rotation")
    if auth != "password":
        for key in ("secret", "rotation"):
            if key in spec:
                raise fail(f"'{key}' is only for auth: password users, not auth: {auth}", field=f"{field}.{key}")
        return None, None
    if secret is None:
        raise fail("an auth: password user needs 'secret' (the ARN of its Secrets Manager secret)",
                   field=f"{field}.secret")
    if not isinstance(secret, str):
        raise fail(f"must be a string, not {type(secret).__name__}", field=f"{field}.secret")
    parts = secret_arn_parts(secret)
    if parts is None:
        raise fail(f"invalid secret ARN '{_clip(secret)}' (expected "
                   "arn:<partition>:secretsmanager:<region>:<account>:secret:<name>)", field=f"{field}.secret")
    if partition_of_region(parts["region"]) != parts["partition"]:
        raise fail(f"secret ARN '{_clip(secret)}' names partition {parts['partition']} for region {parts['region']}",
                   field=f"{field}.secret")
    if rotation is None:
        rotation = "single-user"
    if not isinstance(rotation, str) or rotation not in ROTATIONS:
        raise fail(f"invalid rotation '{_clip(str(rotation))}' (expected single-user or alternating-users)",
                   field=f"{field}.rotation")
    return secret, rotation


def _clip(text: str, limit: int = 80) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
