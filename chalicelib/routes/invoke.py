"""The direct-invoke function ``vend``: another Lambda function asks for a token.

Payload::

    {"database": "orders-prod", "db_user": "orders_app",
     "identity": {"url": ..., "method": "POST", "headers": {...}, "body": ...}}

``identity`` is a signed ``sts:GetCallerIdentity`` request (build it with
:func:`rdsvend.invoke_payload`). Stages: validate the payload → prove the caller
(:mod:`chalicelib.vending.proof`: configured STS endpoint only, no redirect, signed
``X-Rdsvend-Server-Id``, at most 5 minutes old) → the same pipeline as ``POST /v1/tokens``.
The caller has no source IP here, so a rule conditioned on ``source_ips`` never matches.

The answer is the HTTP 200 body or ``{"error": {"code", "message", "request_id"}}`` (plus
``retry_after`` for ``rate_limited`` / ``upstream_unavailable``). Nothing a caller sends
makes the function raise.

``action`` (optional, default ``vend``) chooses what is asked, with the fields of the matching
HTTP route: ``grant_request`` (``database``, ``db_user``, ``reason``, ``duration_seconds``),
``grant_approve`` / ``grant_deny`` / ``grant_revoke`` (``grant_id``), ``grant_list`` (nothing).
"""
from __future__ import annotations

import json
from typing import Any

from chalice import Blueprint

from chalicelib.aws.deadline import upstream_deadline
from chalicelib.errors import (
    CallerError,
    IdentityProofError,
    InvalidRequestError,
    RateLimitedError,
    UpstreamUnavailableError,
)
from chalicelib.grants.model import Action
from chalicelib.grants.service import GrantService
from chalicelib.identity import CallerIdentity, identity_from_arn
from chalicelib.observability import lambda_entry, logger
from chalicelib.routes.errors import error_body
from chalicelib.routes.grants import get_grant_service
from chalicelib.routes.http import Vending, get_vending_service
from chalicelib.vending.pipeline import VEND_DEADLINE_SECONDS
from chalicelib.vending.proof import proof_config_from_env
from chalicelib.vending.request import parse_token_request
from chalicelib.vending.verifier import IdentityVerifier, StsVerifier

__all__ = ["invoke_routes", "vend", "handle_vend", "get_verifier", "set_verifier", "MAX_PAYLOAD_CHARS", "ACTIONS"]

invoke_routes = Blueprint(__name__)

#: The whole payload, JSON-encoded. A real one (with a session token) is under 8 KiB.
MAX_PAYLOAD_CHARS = 32 * 1024
_PAYLOAD_KEYS = ("database", "db_user", "identity")
#: action -> the fields its payload carries besides ``action`` and ``identity``
ACTIONS: dict[str, tuple[str, ...]] = {
    "vend": ("database", "db_user"),
    "grant_request": ("database", "db_user", "reason", "duration_seconds"),
    "grant_approve": ("grant_id",),
    "grant_deny": ("grant_id",),
    "grant_revoke": ("grant_id",),
    "grant_list": (),
}
#: the grant actions an operator takes on an existing grant (ACTIONS' keys) -> the service's verb
_VERBS: dict[str, Action] = {"grant_approve": "approve", "grant_deny": "deny", "grant_revoke": "revoke"}
_verifier: IdentityVerifier | None = None


def get_verifier() -> IdentityVerifier:
    """The process-wide proof verifier, configured from the environment on first use.

    Raises :class:`ValueError` when ``RDSVEND_SERVER_ID`` is not set: every proof is then
    refused (answered ``internal``), never accepted unbound.
    """
    global _verifier
    if _verifier is None:
        _verifier = StsVerifier(proof_config_from_env())
    return _verifier


def set_verifier(verifier: IdentityVerifier | None) -> None:
    """Replace the verifier (tests, the local stack)."""
    global _verifier
    _verifier = verifier


def handle_vend(
    payload: Any,
    request_id: str,
    *,
    service: Vending | None = None,
    verifier: IdentityVerifier | None = None,
    grants: GrantService | None = None,
) -> dict[str, Any]:
    """validate → prove → vend. Returns the 200 body or an error payload; never raises."""
    try:
        verifier = verifier or get_verifier()
    except ValueError as exc:  # RDSVEND_SERVER_ID / RDSVEND_STS_ENDPOINT: refuse everything
        logger.error("direct invoke is not configured", extra={"request_id": request_id, "problem": str(exc)})
        return error_body(None, request_id)
    try:
        action, request = _validate(payload)
        service = service or get_vending_service()
        # one deadline for the identity proof's STS call and every upstream call of the request
        with upstream_deadline(getattr(service, "deadline_seconds", VEND_DEADLINE_SECONDS)):
            caller = verifier.verify(payload["identity"])
            identity = identity_from_arn(caller.arn, account=caller.account)
            logger.info(
                "direct invoke caller proven",
                extra={"request_id": request_id, "arn": caller.arn, "channel": "invoke", "action": action},
            )
            if action == "vend":
                return service.vend(identity, request, request_id, channel="invoke")
            return _grant_action(grants or get_grant_service(), action, identity, request, request_id)
    except CallerError as exc:
        extra: dict[str, Any] = {"request_id": request_id, "code": exc.code, "channel": "invoke"}
        if isinstance(exc, (IdentityProofError, InvalidRequestError)):
            extra["reason"] = str(exc)  # names a field or a check; never a header's value
            extra["sts_code"] = getattr(exc, "sts_code", None)
        if isinstance(exc, UpstreamUnavailableError):
            extra["detail"] = exc.detail
        logger.info("direct invoke refused", extra=extra)
        body = error_body(exc, request_id)
        if isinstance(exc, (RateLimitedError, UpstreamUnavailableError)):
            body["error"]["retry_after"] = exc.retry_after
        return body
    except Exception as exc:  # noqa: BLE001 - the one place failures become answers
        logger.error(
            "unexpected failure in direct invoke",
            extra={"request_id": request_id, "error_type": type(exc).__name__},
        )
        return error_body(exc, request_id)


def _grant_action(grants: GrantService, action: str, identity: CallerIdentity, request: dict[str, Any],
                  request_id: str) -> dict[str, Any]:
    if action == "grant_request":
        return grants.request(identity, request, request_id, channel="invoke")
    if action == "grant_list":
        return grants.listing(identity, request_id)
    verb = _VERBS[action]
    return grants.act(identity, request["grant_id"], verb, request_id, channel="invoke")


def _validate(payload: Any) -> tuple[str, dict[str, Any]]:
    """Shape and size of the payload; the identity proof's own shape is checked by the verifier."""
    if not isinstance(payload, dict):
        kind = "an array" if isinstance(payload, list) else "null" if payload is None else "not an object"
        raise InvalidRequestError(f"payload must be a JSON object, got {kind}", field="payload")
    try:
        size = len(json.dumps(payload, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        raise InvalidRequestError("payload is not JSON-serialisable", field="payload") from None
    if size > MAX_PAYLOAD_CHARS:
        raise InvalidRequestError(f"payload is larger than {MAX_PAYLOAD_CHARS} characters", field="payload")
    action = payload.get("action", "vend")
    if not isinstance(action, str) or action not in ACTIONS:
        raise InvalidRequestError(f"field 'action' must be one of {', '.join(ACTIONS)}", field="action")
    if action == "vend":
        request = parse_token_request(payload, allowed_extra=("identity", "action"))
        fields: dict[str, Any] = {"database": request.database, "db_user": request.db_user}
    else:
        fields = _grant_fields(payload, action)
    if "identity" not in payload:
        raise InvalidRequestError("missing field 'identity'", field="identity")
    return action, fields


def _grant_fields(payload: dict[str, Any], action: str) -> dict[str, Any]:
    """The grant action's own fields; the grant service checks their values."""
    allowed = (*ACTIONS[action], "identity", "action")
    for key in payload:
        if key not in allowed:
            raise InvalidRequestError(f"unknown field '{str(key)[:64]}' for action '{action}'", field=str(key)[:64])
    if action == "grant_request":
        return {k: payload[k] for k in ACTIONS[action] if k in payload}
    if "grant_id" in ACTIONS[action] and "grant_id" not in payload:
        raise InvalidRequestError("missing field 'grant_id'", field="grant_id")
    return {k: payload[k] for k in ACTIONS[action]}


@invoke_routes.lambda_function(name="vend")
@lambda_entry
def vend(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point: one payload in, one token body or error payload out.

    Lambda enters it through this module, never through ``app.py``, so the app's middleware
    does not run around it: :func:`lambda_entry` gives it the same observability (correlation
    id = the Lambda request id on every log and audit line, metrics flushed per invocation).
    """
    request_id = getattr(context, "aws_request_id", None) or "unknown"
    return handle_vend(event, request_id)
