"""The target of a ``proxy`` database: ``target_instance`` or ``target_cluster``, and
``target_auth`` (how the proxy logs in to it: ``iam`` or ``secrets``).

A proxy database names exactly one target and how it is reached; no other database names
either. A proxy cannot log in Kerberos users, and a proxy that reaches its target with IAM
cannot log in password users (it has no password to give). Every problem is a load error
naming the field.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from chalicelib.errors import PolicyLoadError
from chalicelib.policy.model import DbUser, ProxyTarget, TargetAuth, TargetKind

__all__ = ["PROXY_TARGET_KEYS", "proxy_target"]

PROXY_TARGET_KEYS = frozenset({"target_instance", "target_cluster", "target_auth"})
TARGET_AUTHS = ("iam", "secrets")


def proxy_target(spec: Mapping[str, Any], field: str, *, kind: str, users: Mapping[str, DbUser],
                 identifier: re.Pattern[str], fail: Callable[..., PolicyLoadError],
                 string: Callable[..., str]) -> ProxyTarget | None:
    """The database's :class:`ProxyTarget` (None when it is not a proxy), or a load error.

    ``fail(message, field=...)`` and ``string(value, field, pattern, what=...)`` are the
    loader's, so messages name the file and the field as every other key's do."""
    named = [key for key in ("target_instance", "target_cluster") if key in spec]
    if kind != "proxy":
        extra = named + (["target_auth"] if "target_auth" in spec else [])
        if extra:
            raise fail(f"'{extra[0]}' is only for a 'proxy' database (this one names a {kind})",
                       field=f"{field}.{extra[0]}")
        return None
    if not named:
        raise fail("a proxy database needs 'target_instance' or 'target_cluster' (what the proxy stands in front of)",
                   field=f"{field}.target_instance")
    if len(named) > 1:
        raise fail("names both 'target_instance' and 'target_cluster': a proxy's target is one or the other",
                   field=f"{field}.target_cluster")
    key = named[0]
    target_id = string(spec[key], f"{field}.{key}", identifier, what=f"{key.removeprefix('target_')} identifier")
    auth = spec.get("target_auth")
    if auth is None:
        raise fail("missing: how the proxy logs in to its target (iam or secrets)", field=f"{field}.target_auth")
    if auth not in TARGET_AUTHS:
        raise fail(f"invalid target_auth '{_clip(str(auth))}' (expected iam or secrets)", field=f"{field}.target_auth")
    for user in users.values():
        if user.auth == "kerberos":
            raise fail("RDS Proxy cannot log in a Kerberos user: connect it to the instance or cluster",
                       field=f"{field}.users.{_clip(user.name)}.auth")
        if user.auth == "password" and auth == "iam":
            raise fail("a proxy with 'target_auth: iam' logs in with IAM only and cannot log in a password user",
                       field=f"{field}.users.{_clip(user.name)}.auth")
    return ProxyTarget(kind=cast(TargetKind, key.removeprefix("target_")), identifier=target_id,
                       auth=cast(TargetAuth, auth))


def _clip(text: str, limit: int = 80) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
