"""A database secret in the RDS convention: ``{"engine", "host", "port", "username",
"password", "dbname"}``, plus ``"masterarn"`` (the administrator's secret) for alternating
users. Other keys are kept as they are. ``repr`` never shows the password.

An ``ssl`` key is ignored on purpose: rotation always connects with TLS ``verify-full``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.policy.password_users import SECRET_ARN
from chalicelib.rotation.errors import RotationSecretError

__all__ = ["DbSecret", "parse_secret", "ENGINE_FAMILIES", "family_of", "MAX_SECRET_BYTES"]

MAX_SECRET_BYTES = 65536
#: secret ``engine`` values (RDS's and Aurora's) -> the family whose adapter rotates them
ENGINE_FAMILIES = {"postgres": "postgres", "postgresql": "postgres", "aurora-postgresql": "postgres",
                   "mysql": "mysql", "mariadb": "mysql", "aurora-mysql": "mysql", "aurora": "mysql"}
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_$.-]{0,62}")
_DBNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")


def family_of(engine: str) -> str | None:
    return ENGINE_FAMILIES.get(engine)


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
        return self.first_difference(other, username=False) is None

    def login_fields(self) -> dict[str, Any]:
        """What names the login: engine family, host (as DNS compares it), port and username."""
        return {"engine": self.family, "host": self.host.lower().rstrip("."), "port": self.port,
                "username": self.username}

    def first_difference(self, other: DbSecret, *, username: bool = True) -> tuple[str, Any, Any] | None:
        """The first of engine, host, port (and username) in which the two secrets differ, as
        ``(field, this one's, the other's)``; None when they name the same server (and login)."""
        mine, theirs = self.login_fields(), other.login_fields()
        for name in ("engine", "host", "port", "username") if username else ("engine", "host", "port"):
            if mine[name] != theirs[name]:
                return name, mine[name], theirs[name]
        return None


def parse_secret(text: Any, *, what: str = "the secret") -> DbSecret:
    """Parse a SecretString; :class:`RotationSecretError` names the field (never its value
    when the field is the password)."""
    if not isinstance(text, str):
        raise RotationSecretError(f"{what} has no SecretString")
    if len(text) > MAX_SECRET_BYTES:
        raise RotationSecretError(f"{what} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise RotationSecretError(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise RotationSecretError(f"{what} must be a JSON object")
    engine = data.get("engine")
    if not isinstance(engine, str) or engine not in ENGINE_FAMILIES:
        raise RotationSecretError(f"{what}: invalid engine '{_clip(engine)}' (expected postgres, mysql or mariadb)")
    host = data.get("host")
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise RotationSecretError(f"{what}: invalid host '{_clip(host)}'")
    port = data.get("port", 5432 if ENGINE_FAMILIES[engine] == "postgres" else 3306)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RotationSecretError(f"{what}: invalid port '{_clip(port)}'")
    username = data.get("username")
    if not isinstance(username, str) or not _USER.fullmatch(username):
        raise RotationSecretError(f"{what}: invalid username '{_clip(username)}'")
    password = data.get("password")
    if not isinstance(password, str) or not password or len(password) > 4096:
        raise RotationSecretError(f"{what}: the password is missing or not a string")
    dbname = data.get("dbname")
    if dbname is not None and (not isinstance(dbname, str) or not _DBNAME.fullmatch(dbname)):
        raise RotationSecretError(f"{what}: invalid dbname '{_clip(dbname)}'")
    masterarn = data.get("masterarn")
    if masterarn is not None and (not isinstance(masterarn, str) or not SECRET_ARN.fullmatch(masterarn)):
        raise RotationSecretError(f"{what}: invalid masterarn '{_clip(masterarn)}'")
    known = {"engine", "host", "port", "username", "password", "dbname", "masterarn"}
    extra = {k: v for k, v in data.items() if k not in known}
    return DbSecret(engine=engine, host=host, port=port, username=username, password=password,
                    dbname=dbname, masterarn=masterarn, extra=extra)


def _clip(value: Any, limit: int = 60) -> str:
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
