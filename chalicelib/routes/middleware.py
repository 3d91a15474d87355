"""Chalice middleware: correlation ids, metrics flushing and a last-resort error answer."""
from __future__ import annotations

import json
from typing import Any, Callable

from chalice import Chalice, Response

from chalicelib.observability import flush_metrics, logger

__all__ = ["register_middleware"]

_CHALICE_STATUS_CODES = {400: "invalid_request", 405: "invalid_request", 415: "invalid_request",
                         403: "forbidden", 401: "unauthenticated"}


def _http(event: Any, get_response: Callable[[Any], Response]) -> Response:
    context = getattr(event, "context", None) or {}
    request_id = context.get("requestId", "unknown") if isinstance(context, dict) else "unknown"
    logger.set_correlation_id(request_id)
    try:
        response = get_response(event)
    except Exception as exc:  # noqa: BLE001 - nothing escapes as a traceback
        logger.error("unhandled failure in HTTP handler", extra={"error_type": type(exc).__name__})
        response = Response(body=json.dumps({"error": {"code": "internal", "message": "internal error",
                                                       "request_id": request_id}}),
                            status_code=500,
                            headers={"Content-Type": "application/json", "Cache-Control": "no-store"})
    finally:
        flush_metrics()
    return _normalise(response, request_id)


def _normalise(response: Response, request_id: str) -> Response:
    """Chalice's own error bodies (405, 415, 500) take rdsvend's error model too."""
    body = response.body
    if isinstance(body, dict) and "Code" in body and "error" not in body:
        status = response.status_code
        code = _CHALICE_STATUS_CODES.get(status, "internal")
        message = "internal error" if code == "internal" else str(body.get("Message", ""))[:200]
        response.body = json.dumps({"error": {"code": code, "message": message, "request_id": request_id}})
        response.headers = {**(response.headers or {}), "Content-Type": "application/json",
                            "Cache-Control": "no-store"}
    return response


def _lambda(event: Any, get_response: Callable[[Any], Any]) -> Any:
    context = getattr(event, "context", None)
    request_id = getattr(context, "aws_request_id", None) or "unknown"
    logger.set_correlation_id(request_id)
    try:
        return get_response(event)
    finally:
        flush_metrics()


def _scheduled(event: Any, get_response: Callable[[Any], Any]) -> Any:
    try:
        event_id = event.to_dict().get("id")
    except Exception:  # noqa: BLE001
        event_id = None
    logger.set_correlation_id(event_id or getattr(getattr(event, "context", None), "aws_request_id", None))
    try:
        return get_response(event)
    finally:
        flush_metrics()


def register_middleware(app: Chalice) -> None:
    app.register_middleware(_http, "http")
    app.register_middleware(_lambda, "pure_lambda")
    app.register_middleware(_scheduled, "scheduled")
