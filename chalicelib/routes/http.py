"""HTTP routes: ``POST /v1/tokens``, ``GET /v1/databases``, ``GET /v1/whoami``.

Every route sits behind API Gateway's IAM authorizer; the caller is the identity API Gateway
vouches for in ``requestContext.identity``. Views only translate: the work is in
:mod:`chalicelib.vending.pipeline`.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from chalice import Blueprint, IAMAuthorizer, Response

from chalicelib.identity import CallerIdentity, identity_from_request_context
from chalicelib.observability import logger
from chalicelib.routes.errors import error_body, error_status_headers
from chalicelib.routes.wiring import build_vending_service
from chalicelib.vending.request import parse_json_body

__all__ = ["http_routes", "set_vending_service", "get_vending_service", "json_response", "answer", "Vending"]

http_routes = Blueprint(__name__)
iam_authorizer = IAMAuthorizer()

BASE_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class Vending(Protocol):
    """What the routes ask: :class:`chalicelib.vending.pipeline.VendingService` (or a stand-in in tests)."""

    def vend(self, identity: CallerIdentity, request: Any, request_id: str, *,
             channel: str = "http") -> dict[str, Any]: ...

    def databases(self, identity: CallerIdentity, request_id: str) -> dict[str, Any]: ...


_service: Vending | None = None


def get_vending_service() -> Vending:
    """The process-wide pipeline, built from the environment on first use."""
    global _service
    if _service is None:
        _service = build_vending_service()
    return _service


def set_vending_service(service: Vending | None) -> None:
    """Replace the pipeline (tests, the local stack, benchmarks)."""
    global _service
    _service = service


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body, separators=(",", ":")), status_code=status,
                    headers={**BASE_HEADERS, **(headers or {})})


def _request_id() -> str:
    context = http_routes.current_request.context or {}
    value = context.get("requestId") if isinstance(context, dict) else None
    return value if isinstance(value, str) else "unknown"


def answer(work: Callable[[CallerIdentity, str], Any]) -> Response:
    request_id = _request_id()
    try:
        identity = identity_from_request_context(http_routes.current_request.context)
        return json_response(work(identity, request_id))
    except Exception as exc:  # noqa: BLE001 - the one place failures become answers
        status, headers = error_status_headers(exc)
        if status == 500:
            logger.error("unexpected failure", extra={"request_id": request_id,
                                                      "error_type": type(exc).__name__})
        return json_response(error_body(exc, request_id), status, headers)


@http_routes.route("/v1/tokens", methods=["POST"], authorizer=iam_authorizer, content_types=["*/*"])
def create_token() -> Response:
    raw = http_routes.current_request.raw_body

    def work(identity: CallerIdentity, request_id: str) -> Any:
        return get_vending_service().vend(identity, parse_json_body(raw), request_id)

    return answer(work)


@http_routes.route("/v1/databases", methods=["GET"], authorizer=iam_authorizer, content_types=["*/*"])
def list_databases() -> Response:
    # GET has no body: any Content-Type a client sends is accepted (Chalice's default is a 415)
    return answer(lambda identity, request_id: get_vending_service().databases(identity, request_id))


@http_routes.route("/v1/whoami", methods=["GET"], authorizer=iam_authorizer, content_types=["*/*"])
def whoami() -> Response:
    return answer(lambda identity, request_id: identity.to_whoami())
