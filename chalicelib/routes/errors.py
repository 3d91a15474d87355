"""The one place errors become answers: ``{"error": {"code", "message", "request_id"}}``.

Caller errors keep their status and code; anything else is a bare 500 ``internal`` with no
detail. Shared by the HTTP routes and the direct-invoke function.
"""
from __future__ import annotations

from typing import Any

from chalicelib.errors import CallerError, RateLimitedError, UpstreamUnavailableError

__all__ = ["error_body", "error_status_headers", "INTERNAL_MESSAGE"]

INTERNAL_MESSAGE = "internal error"


def error_body(exc: BaseException | None, request_id: str) -> dict[str, Any]:
    if isinstance(exc, CallerError):
        return {"error": {"code": exc.code, "message": exc.caller_message, "request_id": request_id}}
    return {"error": {"code": "internal", "message": INTERNAL_MESSAGE, "request_id": request_id}}


def error_status_headers(exc: BaseException | None) -> tuple[int, dict[str, str]]:
    headers: dict[str, str] = {}
    if isinstance(exc, (RateLimitedError, UpstreamUnavailableError)):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, CallerError):
        return exc.status, headers
    return 500, headers
