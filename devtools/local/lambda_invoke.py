"""The local Lambda Invoke API for the ``vend`` function (direct invoke on the local stack).

``boto3.client("lambda").invoke(FunctionName="rdsvend-local-vend", Payload=...)`` reaches
this server when ``AWS_ENDPOINT_URL_LAMBDA`` points at it (``rdsvend local env`` exports
it). Before the function runs it does what Lambda does:

- verifies the SigV4 signature (service ``lambda``) against the local AWS's keys, with the
  local verifier the gateway uses, answering 403 with Lambda's error bodies otherwise;
- checks that the caller may ``lambda:InvokeFunction`` on the function: its identity
  policies and boundary, and the organization's SCPs, read live from the local AWS and
  judged by rdsvend's evaluator (the function's resource policy allows the organization);
- answers ``Invoke`` only: ``POST /2015-03-31/functions/{name|arn}/invocations``,
  ``RequestResponse`` (``Event`` is accepted and run, 202; ``DryRun`` is 204), a JSON
  payload of at most 6 MB.

The function is the real handler, :func:`chalicelib.routes.invoke.vend`, in this process,
configured as the deployed function is (``RDSVEND_SERVER_ID``, and ``RDSVEND_STS_ENDPOINT``
= the local AWS, so identity proofs are sent to the local STS). One invocation at a time,
as one Lambda execution environment runs them.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.routes.invoke import set_verifier, vend
from devtools.local.authorize import invoke_permission as enforced_permission
from devtools.local.gateway import LambdaContext, signature_failure
from devtools.local.httpserve import HttpAnswer, LoopbackHandler, LoopbackServer, LoopbackService, RefusedError
from devtools.local.permissions import identity_permission
from devtools.local.sigv4 import (
    Credential,
    SecretLookup,
    SignatureError,
    VerifiedRequest,
    verify_header_signed,
)

__all__ = ["FUNCTION_NAME", "MAX_PAYLOAD_BYTES", "InvokeResponse", "LambdaInvokeServer", "server_id_for",
           "invoke_permission", "start_vend_function"]

log = logging.getLogger(__name__)

#: The local ``vend`` function's name, as ``chalice deploy`` names it for the stage ``local``.
FUNCTION_NAME = "rdsvend-local-vend"
#: Lambda's limit for a synchronous invocation's request payload.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
#: An oversized body up to this size is read and dropped before the 413 (beyond: the connection is cut).
_DRAIN_LIMIT = 4 * MAX_PAYLOAD_BYTES
_PATH_PREFIX = "/2015-03-31/functions/"
_PATH_SUFFIX = "/invocations"

#: ``(credential, function_arn) -> (allowed, why)``: may this caller invoke the function?
Permission = Callable[[Credential, str], tuple[bool, str]]


def server_id_for(stage: str, account: str) -> str:
    """The server id a deployment of ``stage`` in ``account`` configures (``rdsvend-prod.111122223333``)."""
    return f"rdsvend-{stage}.{account}"


#: What the Invoke API answers (the shared loopback HTTP answer).
InvokeResponse = HttpAnswer


def _error(status: int, error_type: str, message: str) -> InvokeResponse:
    body = json.dumps({"Type": "User", "Message": message}).encode()
    return InvokeResponse(status, {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}, body)


class LambdaInvokeServer(LoopbackService):
    """``start()`` returns the URL to use as ``AWS_ENDPOINT_URL_LAMBDA``; ``stop()`` closes it."""

    def __init__(
        self,
        handler: Callable[[Any, Any], Any],
        lookup: SecretLookup,
        *,
        region: str,
        account: str,
        function_name: str = FUNCTION_NAME,
        permission: Permission | None = None,
        clock: Clock = SYSTEM_CLOCK,
        max_skew: timedelta = timedelta(minutes=5),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.handler = handler
        self.lookup = lookup
        self.region = region
        self.account = account
        self.function_name = function_name
        self.function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.permission = permission
        self.clock = clock
        self.max_skew = max_skew
        self._run_lock = threading.Lock()
        self._http = LoopbackServer((host, port), _handler_for(self), name="rdsvend-lambda")

    # -- one request ------------------------------------------------------------------

    def _names_this_function(self, name: str) -> bool:
        """A name, a full ARN or a partial ARN (``ACCOUNT:function:NAME``), unqualified or ``$LATEST``."""
        for qualified in (name, name.removesuffix(":$LATEST")):
            if qualified in (self.function_name, self.function_arn,
                             f"{self.account}:function:{self.function_name}"):
                return True
        return False

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> InvokeResponse:
        request_id = str(uuid.uuid4())
        response = self._handle(method, raw_path, headers, body, request_id)
        return InvokeResponse(response.status, {**response.headers, "x-amzn-RequestId": request_id}, response.body)

    def _handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes,
                request_id: str) -> InvokeResponse:
        """Lambda's checks in its order (the operation, the signature, the function, the caller's
        permission, the invocation type, the payload), then the function; a refusal is answered
        as Lambda words it."""
        parts = urlsplit(raw_path)
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            name = _function_named(method, parts.path)
            verified = self._verify(method, raw_path, headers, lowered, body)
            self._check_function(name, parts.query)
            self._check_permission(verified.credential)
            invocation_type = _invocation_type(lowered)
            if invocation_type == "DryRun":
                return InvokeResponse(204, {}, b"")
            event = _event(body)
        except RefusedError as refused:
            return refused.answer
        status, headers_out, payload = self._run(event, request_id)
        if invocation_type == "Event":
            return InvokeResponse(202, {}, b"")
        return InvokeResponse(status, headers_out, payload)

    def _verify(self, method: str, raw_path: str, headers: Mapping[str, str], lowered: Mapping[str, str],
                body: bytes) -> VerifiedRequest:
        """The request's SigV4 signature (service ``lambda``), checked against the local AWS's keys."""
        if "authorization" not in lowered:
            raise _refused(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        now = self.clock.now()
        try:
            return verify_header_signed(method, f"http://{lowered.get('host', '')}{raw_path}", dict(headers),
                                        body, service="lambda", lookup=self.lookup, now=now,
                                        max_skew=self.max_skew, region=self.region)
        except SignatureError as exc:
            log.info("lambda invoke refused a request: %s", exc.reason)
            if exc.reason == "wrong_service":
                raise _refused(403, "InvalidSignatureException",
                               "Credential should be scoped to correct service: 'lambda'.") from None
            refused = signature_failure(exc, now, lowered.get("x-amz-date"))
            message = json.loads(refused.body).get("message", "")
            raise _refused(refused.status, refused.headers.get("x-amzn-ErrorType", "InvalidSignatureException"),
                           message) from None

    def _check_function(self, name: str, query: str) -> None:
        """The request names this function, unqualified or ``$LATEST``."""
        qualifiers = parse_qs(query).get("Qualifier") or []
        qualifier = qualifiers[0] if qualifiers else None
        if not self._names_this_function(name) or qualifier not in (None, "$LATEST"):
            shown = name if name.startswith("arn:") else f"{self.function_arn.rsplit(':', 1)[0]}:{name}"
            raise _refused(404, "ResourceNotFoundException", f"Function not found: {shown[:200]}")

    def _check_permission(self, credential: Credential) -> None:
        """The caller may ``lambda:InvokeFunction`` on this function (when a permission is configured)."""
        if self.permission is None:
            return
        allowed, why = self.permission(credential, self.function_arn)
        if not allowed:
            log.info("lambda invoke: %s may not invoke %s: %s", credential.principal_arn,
                     self.function_name, why)
            message = why if why.startswith("User: ") else (
                f"User: {credential.principal_arn} is not authorized to perform: "
                f"lambda:InvokeFunction on resource: {self.function_arn} because {why}")
            raise _refused(403, "AccessDeniedException", message)

    def _run(self, event: Any, request_id: str) -> tuple[int, dict[str, str], bytes]:
        """Run the function, one invocation at a time; what it raised becomes Lambda's error payload."""
        context = LambdaContext(self.function_name, self.region, self.account, request_id)
        try:
            with self._run_lock:
                result = self.handler(event, context)
            payload = json.dumps(result).encode()
            headers_out = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        except Exception as exc:  # noqa: BLE001 - what Lambda does when the function raises
            log.error("the vend function raised %s", type(exc).__name__)
            payload = json.dumps({"errorMessage": "the function raised an exception",
                                  "errorType": type(exc).__name__}).encode()
            headers_out = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST",
                           "X-Amz-Function-Error": "Unhandled"}
        return 200, headers_out, payload


def _refused(status: int, error_type: str, message: str) -> RefusedError:
    """A refusal answered with Lambda's error body."""
    return RefusedError(_error(status, error_type, message))


def _function_named(method: str, path: str) -> str:
    """The function name (or ARN) an Invoke path names; Lambda's 404 for any other operation."""
    if not (path.startswith(_PATH_PREFIX) and path.endswith(_PATH_SUFFIX)) or method != "POST":
        raise _refused(404, "UnknownOperationException", "Unknown operation")
    return unquote(path[len(_PATH_PREFIX):-len(_PATH_SUFFIX)])


def _invocation_type(lowered: Mapping[str, str]) -> str:
    invocation_type = lowered.get("x-amz-invocation-type", "RequestResponse")
    if invocation_type not in ("RequestResponse", "Event", "DryRun"):
        raise _refused(400, "InvalidParameterValueException",
                       f"1 validation error detected: Value '{invocation_type[:40]}' at 'invocationType' "
                       "failed to satisfy constraint: Member must satisfy enum value set: "
                       "[Event, RequestResponse, DryRun]")
    return invocation_type


def _event(body: bytes) -> Any:
    """The payload as JSON (none: ``{}``)."""
    try:
        return json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, ValueError, RecursionError):  # nested too deep: an answer, as the HTTP API gives
        raise _refused(400, "InvalidRequestContentException",
                       "Could not parse request body into json: Could not parse payload into json") from None


def invoke_permission(iam_client_for: Callable[[str], Any], org_client: Any) -> Permission:
    """``lambda:InvokeFunction`` as AWS decides it for a caller of this organization: the
    caller's identity policies and boundary, and every SCP level above its account."""

    decide = identity_permission(iam_client_for, org_client, "lambda:InvokeFunction")
    return lambda credential, function_arn: decide(credential.principal_arn, credential.account, function_arn)


def _handler_for(server: LambdaInvokeServer) -> type[LoopbackHandler]:
    class Handler(LoopbackHandler):
        server_version = "rdsvend-local-lambda"
        max_body = MAX_PAYLOAD_BYTES
        drain_limit = _DRAIN_LIMIT

        def bad_length(self) -> HttpAnswer:
            return _error(400, "InvalidRequestContentException", "Invalid Content-Length")

        def too_large(self) -> HttpAnswer:
            return _error(413, "RequestTooLargeException",
                          f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation")

        def answer(self, body: bytes) -> HttpAnswer:
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                headers[name] = f"{headers[name]},{value}" if name in headers else value
            return server.handle(self.command, self.path, headers, body)

    return Handler


def start_vend_function(*, region: str, account: str, lookup: SecretLookup, iam_client_for: Callable[[str], Any],
                        org_client: Any, denials: Any = None, org_id: str | None = None,
                        port: int = 0) -> LambdaInvokeServer:
    """Configure this process as the deployed ``vend`` function is and serve Invoke for it.

    Call after the gateway has configured the app's environment (``RDSVEND_STS_ENDPOINT`` is
    the local AWS); sets ``RDSVEND_SERVER_ID`` the way a deployment of the stage ``local``
    in the service account would.
    """

    os.environ["RDSVEND_SERVER_ID"] = server_id_for("local", account)

    set_verifier(None)  # configured again, from this environment, on first use
    if denials is not None:  # the local AWS enforces IAM: Invoke is decided the same way

        function_arn = f"arn:aws:lambda:{region}:{account}:function:{FUNCTION_NAME}"
        permission = enforced_permission(function_arn, org_id, denials)
    else:
        permission = invoke_permission(iam_client_for, org_client)
    server = LambdaInvokeServer(vend, lookup, region=region, account=account, permission=permission, port=port)
    server.start()
    return server
