"""A database secret in the RDS convention: ``{"engine", "host", "port", "username",
"password", "dbname"}``, plus ``"masterarn"`` (the administrator's secret) for alternating
users. Other keys are kept as they are. ``repr`` never shows the password. Read by the
rotation (which writes it) and the canary (which logs in with it).

An ``ssl`` key is ignored on purpose: logins always use TLS ``verify-full``.

The logins of an alternating pair are named by convention: ``<user>`` and ``<user>_clone``,
both acting as the NOLOGIN role ``<user>_owner``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.engines.base import ENGINE_FAMILIES
from chalicelib.errors import RdsvendError
from chalicelib.policy.password_users import SECRET_ARN

__all__ = ["DbSecret", "DbSecretError", "parse_secret", "MAX_SECRET_BYTES",
           "owner_role_of", "clone_of", "base_of", "CLONE_SUFFIX", "OWNER_SUFFIX"]

CLONE_SUFFIX = "_clone"
OWNER_SUFFIX = "_owner"


def clone_of(base: str) -> str:
    return base + CLONE_SUFFIX


def base_of(username: str) -> str:
    return username[: -len(CLONE_SUFFIX)] if username.endswith(CLONE_SUFFIX) else username


def owner_role_of(base: str) -> str:
    """The NOLOGIN role an alternating pair's objects and privileges belong to."""
    return base + OWNER_SUFFIX


class DbSecretError(RdsvendError):
    """A secret's value is not a database secret in the RDS convention; the message names the
    field, never the password."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

MAX_SECRET_BYTES = 65536
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_$.-]{0,62}")
_DBNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")


@dataclass(frozen=True)
class DbSecret:
    engine: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    dbname: str | None = None
    masterarn: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def family(self) -> str:
        return ENGINE_FAMILIES[self.engine]

    def with_login(self, username: str, password: str) -> DbSecret:
        return replace(self, username=username, password=password)

    def to_json(self) -> str:
        data: dict[str, Any] = dict(self.extra)
        data.update(engine=self.engine, host=self.host, port=self.port, username=self.username,
                    password=self.password)
        if self.dbname is not None:
            data["dbname"] = self.dbname
        if self.masterarn is not None:
            data["masterarn"] = self.masterarn
        return json.dumps(data)

    def same_place(self, other: DbSecret) -> bool:
        """Same engine family, host and port: the secrets name the same server."""
        return (self.family, self.host.lower().rstrip("."), self.port) == (
            other.family, other.host.lower().rstrip("."), other.port)


def parse_secret(text: Any, *, what: str = "the secret") -> DbSecret:
    """Parse a SecretString; :class:`DbSecretError` names the field (never its value
    when the field is the password)."""
    if not isinstance(text, str):
        raise DbSecretError(f"{what} has no SecretString")
    if len(text) > MAX_SECRET_BYTES:
        raise DbSecretError(f"{what} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise DbSecretError(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise DbSecretError(f"{what} must be a JSON object")
    engine = data.get("engine")
    if not isinstance(engine, str) or engine not in ENGINE_FAMILIES:
        raise DbSecretError(f"{what}: invalid engine '{_clip(engine)}' (expected postgres, mysql or mariadb)")
    host = data.get("host")
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise DbSecretError(f"{what}: invalid host '{_clip(host)}'")
    port = data.get("port", 5432 if ENGINE_FAMILIES[engine] == "postgres" else 3306)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise DbSecretError(f"{what}: invalid port '{_clip(port)}'")
    username = data.get("username")
    if not isinstance(username, str) or not _USER.fullmatch(username):
        raise DbSecretError(f"{what}: invalid username '{_clip(username)}'")
    password = data.get("password")
    if not isinstance(password, str) or not password or len(password) > 4096:
        raise DbSecretError(f"{what}: the password is missing or not a string")
    dbname = data.get("dbname")
    if dbname is not None and (not isinstance(dbname, str) or not _DBNAME.fullmatch(dbname)):
        raise DbSecretError(f"{what}: invalid dbname '{_clip(dbname)}'")
    masterarn = data.get("masterarn")
    if masterarn is not None and (not isinstance(masterarn, str) or not SECRET_ARN.fullmatch(masterarn)):
        raise DbSecretError(f"{what}: invalid masterarn '{_clip(masterarn)}'")
    known = {"engine", "host", "port", "username", "password", "dbname", "masterarn"}
    extra = {k: v for k, v in data.items() if k not in known}
    return DbSecret(engine=engine, host=host, port=port, username=username, password=password,
                    dbname=dbname, masterarn=masterarn, extra=extra)


def _clip(value: Any, limit: int = 60) -> str:
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
