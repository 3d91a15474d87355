"""Chalice middleware: correlation ids, metrics flushing and a last-resort error answer.

Middleware runs only where Lambda enters through ``app.py`` (the API handler). A Blueprint's
function is entered through its own module, so direct-invoke functions carry their
observability themselves (:func:`chalicelib.observability.lambda_entry`), and so does the
scheduled canary (:mod:`chalicelib.routes.schedule`).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalice import Chalice, Response

from chalicelib.observability import invocation, logger
from chalicelib.routes.errors import INTERNAL_MESSAGE, error_answer, error_body

__all__ = ["register_middleware"]

_CHALICE_STATUS_CODES = {400: "invalid_request", 405: "invalid_request", 415: "invalid_request",
                         403: "forbidden", 401: "unauthenticated"}


def _http(event: Any, get_response: Callable[[Any], Response]) -> Response:
    context = getattr(event, "context", None) or {}
    request_id = context.get("requestId", "unknown") if isinstance(context, dict) else "unknown"
    with invocation(request_id):
        try:
            response = get_response(event)
        except Exception as exc:  # noqa: BLE001 - nothing escapes as a traceback
            logger.error("unhandled failure in HTTP handler", extra={"error_type": type(exc).__name__})
            response = Response(body=json.dumps(error_body(None, request_id)),
                                status_code=500,
                                headers={"Content-Type": "application/json", "Cache-Control": "no-store"})
    return _normalise(response, request_id)


def _normalise(response: Response, request_id: str) -> Response:
    """Chalice's own error bodies (405, 415, 500) take rdsvend's error model too."""
    body = response.body
    if isinstance(body, dict) and "Code" in body and "error" not in body:
        status = response.status_code
        code = _CHALICE_STATUS_CODES.get(status, "internal")
        message = INTERNAL_MESSAGE if code == "internal" else str(body.get("Message", ""))[:200]
        response.body = json.dumps(error_answer(code, message, request_id))
        response.headers = {**(response.headers or {}), "Content-Type": "application/json",
                            "Cache-Control": "no-store"}
    return response


def register_middleware(app: Chalice) -> None:
    app.register_middleware(_http, "http")
