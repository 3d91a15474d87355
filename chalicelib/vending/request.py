"""Validate a token request: the body of ``POST /v1/tokens`` and of the ``vend`` payload."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import InvalidRequestError

__all__ = ["TokenRequest", "parse_token_request", "parse_json_body", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 16 * 1024
MAX_NAME = 63
DATABASE = re.compile(r"[a-z0-9-]{1,63}")
DB_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_$.-]{0,62}")
FIELDS = ("database", "db_user")


@dataclass(frozen=True)
class TokenRequest:
    database: str
    db_user: str


def parse_json_body(raw: bytes | str | None) -> Any:
    if raw is None or raw in (b"", ""):
        raise InvalidRequestError("request body is empty; expected a JSON object", field="body")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequestError(f"request body is larger than {MAX_BODY_BYTES} bytes", field="body")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequestError("request body is not valid JSON", field="body") from None


def parse_token_request(data: Any, *, allowed_extra: tuple[str, ...] = ()) -> TokenRequest:
    if not isinstance(data, dict):
        raise InvalidRequestError(f"request body must be a JSON object, not {_json_kind(data)}", field="body")
    for key in data:
        if key not in FIELDS and key not in allowed_extra:
            raise InvalidRequestError(f"unknown field '{_clip(str(key))}'", field=str(key)[:64])
    values = {}
    for name, pattern in (("database", DATABASE), ("db_user", DB_USER)):
        if name not in data:
            raise InvalidRequestError(f"missing field '{name}'", field=name)
        value = data[name]
        if not isinstance(value, str):
            raise InvalidRequestError(f"field '{name}' must be a string, not {_json_kind(value)}", field=name)
        if len(value) > MAX_NAME:
            raise InvalidRequestError(f"field '{name}' is longer than {MAX_NAME} characters", field=name)
        if not pattern.fullmatch(value):
            raise InvalidRequestError(f"field '{name}' has an invalid value '{_clip(value)}'", field=name)
        values[name] = value
    return TokenRequest(**values)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), "a value")


def _clip(text: str, limit: int = 64) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
