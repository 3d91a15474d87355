"""HTTP routes of just-in-time access: ``POST /v1/grants``, ``POST /v1/grants/{id}/approve``,
``.../deny``, ``.../revoke`` and ``GET /v1/grants``. Views only translate; the work is in
:mod:`chalicelib.grants.service`. Errors take the one error shape (:mod:`chalicelib.routes.errors`):
400 bad input, 403 not allowed (or one's own request), 404 unknown or not visible, 409 the grant
is no longer in a state the action applies to.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, IAMAuthorizer, Response

from chalicelib.errors import ForbiddenError, InvalidRequestError
from chalicelib.grants.model import Action
from chalicelib.grants.service import GrantService
from chalicelib.identity import CallerIdentity
from chalicelib.routes.http import answer, get_vending_service
from chalicelib.vending.request import parse_json_body

__all__ = ["grant_routes", "get_grant_service", "set_grant_service", "check_empty_body"]

grant_routes = Blueprint(__name__)
iam_authorizer = IAMAuthorizer()
_grants: GrantService | None = None


def get_grant_service() -> GrantService:
    """The vending pipeline's grant service; none configured (no grants table) refuses (403)."""
    service = _grants if _grants is not None else getattr(get_vending_service(), "grants", None)
    if not isinstance(service, GrantService):
        raise ForbiddenError("grants_unconfigured")
    return service


def set_grant_service(service: GrantService | None) -> None:
    """Replace the grant service (tests, the local stack)."""
    global _grants
    _grants = service


def check_empty_body(raw: bytes | str | None) -> None:
    """approve/deny/revoke take no fields: no body, or ``{}``."""
    if raw is None or raw in (b"", ""):
        return
    data = parse_json_body(raw)
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object", field="body")
    if data:
        raise InvalidRequestError(f"unknown field '{str(next(iter(data)))[:64]}'", field="body")


@grant_routes.route("/v1/grants", methods=["POST"], authorizer=iam_authorizer, content_types=["*/*"])
def request_grant() -> Response:
    raw = grant_routes.current_request.raw_body

    def work(identity: CallerIdentity, request_id: str) -> Any:
        return get_grant_service().request(identity, parse_json_body(raw), request_id)

    return answer(work)


@grant_routes.route("/v1/grants", methods=["GET"], authorizer=iam_authorizer, content_types=["*/*"])
def list_grants() -> Response:
    return answer(lambda identity, request_id: get_grant_service().listing(identity, request_id))


def _act(grant_id: str, action: Action) -> Response:
    raw = grant_routes.current_request.raw_body

    def work(identity: CallerIdentity, request_id: str) -> Any:
        check_empty_body(raw)
        return get_grant_service().act(identity, grant_id, action, request_id)

    return answer(work)


@grant_routes.route("/v1/grants/{grant_id}/approve", methods=["POST"], authorizer=iam_authorizer,
                    content_types=["*/*"])
def approve_grant(grant_id: str) -> Response:
    return _act(grant_id, "approve")


@grant_routes.route("/v1/grants/{grant_id}/deny", methods=["POST"], authorizer=iam_authorizer,
                    content_types=["*/*"])
def deny_grant(grant_id: str) -> Response:
    return _act(grant_id, "deny")


@grant_routes.route("/v1/grants/{grant_id}/revoke", methods=["POST"], authorizer=iam_authorizer,
                    content_types=["*/*"])
def revoke_grant(grant_id: str) -> Response:
    return _act(grant_id, "revoke")
