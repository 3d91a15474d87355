"""The one place errors become answers: ``{"error": {"code", "message", "request_id"}}``.

Caller errors keep their status and code; anything else is a bare 500 ``internal`` with no
detail. Shared by the HTTP routes and the direct-invoke function.
"""
from __future__ import annotations

from typing import Any

from chalicelib.errors import CallerError, RateLimitedError, UpstreamUnavailableError

__all__ = ["error_answer", "error_body", "error_status_headers", "INTERNAL_MESSAGE"]

INTERNAL_MESSAGE = "internal error"


def error_answer(code: str, message: str, request_id: str) -> dict[str, Any]:
    """rdsvend's error model: the only shape an error answer has."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_body(exc: BaseException | None, request_id: str) -> dict[str, Any]:
    """The answer for ``exc``: a caller error's code and message; anything else a bare ``internal``."""
    if isinstance(exc, CallerError):
        return error_answer(exc.code, exc.caller_message, request_id)
    return error_answer("internal", INTERNAL_MESSAGE, request_id)


def error_status_headers(exc: BaseException | None) -> tuple[int, dict[str, str]]:
    headers: dict[str, str] = {}
    if isinstance(exc, (RateLimitedError, UpstreamUnavailableError)):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, CallerError):
        return exc.status, headers
    return 500, headers
