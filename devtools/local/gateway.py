"""A local API Gateway (REST, IAM auth on every route) in front of the Chalice app.

``chalice local`` authorizes everything; this gateway does what API Gateway does before a
request reaches the function: it verifies the SigV4 signature (service ``execute-api``)
against the local AWS's keys, answers 403 with API Gateway's own bodies when the request is
unsigned, badly signed or stale, and builds the REST proxy event with the identity the
signature proves (``userArn``, ``accountId``, ``principalOrgId``, ``sourceIp``, ``caller``,
``accessKey``, ``user``). The app runs in this process, requests concurrently (as a fleet of
Lambda containers would): Chalice keeps the current request on the app object, so the
gateway gives each serving thread its own (:func:`thread_local_requests`). Connections are
kept alive, with ``TCP_NODELAY`` and each response written at once (no 40 ms Nagle and
delayed-ACK stall between headers and body). A request target must be a path
(origin-form): an absolute-form target, whose path is not the one that was signed, is
refused.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from chalicelib.clock import SYSTEM_CLOCK, Clock
from devtools.local.httpserve import HttpAnswer, LoopbackHandler, LoopbackServer, LoopbackService, RefusedError
from devtools.local.sigv4 import Credential, SecretLookup, SignatureError, VerifiedRequest, verify_header_signed

__all__ = ["Gateway", "LambdaContext", "GatewayResponse", "MAX_BODY_BYTES", "signature_failure",
           "thread_local_requests"]

log = logging.getLogger(__name__)

#: API Gateway's payload limit.
MAX_BODY_BYTES = 10 * 1024 * 1024
MISSING_TOKEN = "Missing Authentication Token"
BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. "
                 "Check your AWS Secret Access Key and signing method. "
                 "Consult the service documentation for details.")
INVALID_TOKEN = "The security token included in the request is invalid."


#: What the gateway answers (the shared loopback HTTP answer).
GatewayResponse = HttpAnswer


def _error(status: int, error_type: str, message: str) -> GatewayResponse:
    body = json.dumps({"message": message}).encode()
    return GatewayResponse(status, {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}, body)


def signature_failure(exc: SignatureError, now: datetime, signed_stamp: str | None) -> GatewayResponse:
    """The 403 API Gateway sends for a signature it refuses (never echoes the signature)."""
    if exc.reason == "stale":
        return _stale(signed_stamp, now)
    if exc.reason == "malformed":
        return _error(403, "IncompleteSignatureException", f"Authorization header is malformed: {exc.detail}")
    error_type, message = _SIGNATURE_REFUSALS.get(exc.reason, ("InvalidSignatureException", BAD_SIGNATURE))
    return _error(403, error_type, message)


#: API Gateway's error type and message by :class:`SignatureError` reason (any other: a mismatch)
_SIGNATURE_REFUSALS: dict[str, tuple[str, str]] = {
    "missing": ("IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."),
    "unknown_key": ("UnrecognizedClientException", INVALID_TOKEN),
    "bad_session_token": ("UnrecognizedClientException", INVALID_TOKEN),
    "wrong_service": ("InvalidSignatureException", "Credential should be scoped to correct service: 'execute-api'."),
    "wrong_region": ("InvalidSignatureException", "Credential should be scoped to a valid region."),
}


def _stale(signed_stamp: str | None, now: datetime) -> GatewayResponse:
    """A signing time more than 5 minutes from now: not yet current, or expired."""
    stamp = (signed_stamp or "").strip()
    fmt = "%Y%m%dT%H%M%SZ"
    try:
        signed = datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
    except ValueError:
        signed = None
    if signed is not None and signed > now:
        return _error(403, "InvalidSignatureException",
                      f"Signature not yet current: {stamp} is still later than "
                      f"{(now + timedelta(minutes=5)).strftime(fmt)} ({now.strftime(fmt)} + 5 min.)")
    return _error(403, "InvalidSignatureException",
                  f"Signature expired: {stamp or 'the signing time'} is now earlier than "
                  f"{(now - timedelta(minutes=5)).strftime(fmt)} ({now.strftime(fmt)} - 5 min.)")


class LambdaContext:
    """The few attributes of a Lambda context object the app and Powertools read."""

    def __init__(self, function_name: str, region: str, account: str, request_id: str,
                 timeout_seconds: float = 30.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Routes:
    """Matches request paths against the app's resource templates, as API Gateway does."""

    def __init__(self, templates: list[str]) -> None:
        compiled = []
        for template in templates:
            parts, names = [], []
            for segment in template.strip("/").split("/"):
                m = re.fullmatch(r"\{(\w+)(\+?)\}", segment)
                if m:
                    names.append(m[1])
                    parts.append(f"(?P<{m[1]}>.+)" if m[2] else f"(?P<{m[1]}>[^/]+)")
                else:
                    parts.append(re.escape(segment))
            # literal templates win over parameterised ones (fewer names first)
            compiled.append((len(names), template, re.compile("/" + "/".join(parts))))
        self._compiled = sorted(compiled, key=lambda c: c[0])

    def match(self, path: str) -> tuple[str, dict[str, str]] | None:
        for _n, template, regex in self._compiled:
            m = regex.fullmatch(path)
            if m:
                return template, {k: unquote(v) for k, v in m.groupdict().items()}
        return None


class Gateway(LoopbackService):
    """The HTTP front: ``start()`` returns its URL; ``stop()`` closes the listener."""

    def __init__(
        self,
        app: Any,
        lookup: SecretLookup,
        *,
        region: str,
        account: str,
        org_id_of: Callable[[str], str | None] = lambda account: None,
        caller_id_of: Callable[[Credential], str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        max_skew: timedelta = timedelta(minutes=5),
        stage: str = "api",
        function_name: str = "rdsvend",
        host: str = "127.0.0.1",
        port: int = 0,
        permission: Callable[[Credential, str], tuple[bool, str]] | None = None,
    ) -> None:
        self.app = app
        #: ``(credential, method ARN) -> (allowed, message)``: may the caller execute-api:Invoke it?
        self.permission = permission
        self.lookup = lookup
        self.region = region
        self.account = account
        self.org_id_of = org_id_of
        self.caller_id_of = caller_id_of or (lambda credential: credential.access_key_id)
        self.clock = clock
        self.max_skew = max_skew
        self.stage = stage
        self.function_name = function_name
        self.api_id = "rdsvendlcl"
        thread_local_requests(app)
        self._routes = _Routes(list(getattr(app, "routes", {}) or {}))
        self._http = LoopbackServer((host, port), _handler_for(self), name="rdsvend-gateway")

    # -- one request ------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes,
               source_ip: str) -> GatewayResponse:
        request_id = str(uuid.uuid4())
        response = self._handle(method, raw_path, headers, body, source_ip, request_id)
        extra = {"x-amzn-RequestId": request_id, "x-amz-apigw-id": base64.b32encode(uuid.uuid4().bytes)[:16].decode()}
        return GatewayResponse(response.status, {**response.headers, **extra}, response.body)

    def _handle(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes,
                source_ip: str, request_id: str) -> GatewayResponse:
        """API Gateway's checks in its order (the route, the signature, the caller's permission),
        then the function; a refusal is answered as API Gateway words it."""
        try:
            parts, matched = self._route(method, raw_path)
            verified = self._verify(method, raw_path, headers, body)
            self._check_permission(verified.credential, method, parts.path or "/")
        except RefusedError as refused:
            return refused.answer
        event = self.event(method, parts, matched, headers, body, source_ip, verified.credential, request_id)
        context = LambdaContext(self.function_name, self.region, self.account, request_id)
        try:
            result = self.app(event, context)
        except Exception:  # noqa: BLE001 - what API Gateway does when the function fails
            log.exception("the function failed")
            return _error(502, "InternalServerErrorException", "Internal server error")
        return _from_proxy_result(result)

    def _route(self, method: str, raw_path: str) -> tuple[SplitResult, tuple[str, dict[str, str]]]:
        """The request target's parts and the app's route (template, path parameters) it matches."""
        if not raw_path.startswith("/"):
            # absolute-form ("http://host/path") or "*": the signature covers the target as
            # sent, so serving the path inside it would serve what was not signed
            raise RefusedError(_error(400, "BadRequestException", "request target must be a path"))
        parts = urlsplit("http://gateway" + raw_path)  # never reads "//x/..." as a host
        matched = self._routes.match(parts.path or "/")
        if matched is None or method not in self.app.routes[matched[0]]:
            raise RefusedError(_error(403, "MissingAuthenticationTokenException", MISSING_TOKEN))
        return parts, matched

    def _verify(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes) -> VerifiedRequest:
        """The request's SigV4 signature (service ``execute-api``), checked against the local AWS's keys."""
        single = _single_headers(headers)
        lowered = {k.lower(): v for k, v in single.items()}
        if "authorization" not in lowered:
            raise RefusedError(_error(403, "MissingAuthenticationTokenException", MISSING_TOKEN))
        host = lowered.get("host", "")
        now = self.clock.now()
        try:
            return verify_header_signed(method, f"http://{host}{raw_path}", single, body,
                                        service="execute-api", lookup=self.lookup, now=now,
                                        max_skew=self.max_skew, region=self.region)
        except SignatureError as exc:
            log.info("gateway refused a request: %s", exc.reason)
            raise RefusedError(signature_failure(exc, now, lowered.get("x-amz-date"))) from None

    def _check_permission(self, credential: Credential, method: str, path: str) -> None:
        """The caller may ``execute-api:Invoke`` the method (when a permission is configured)."""
        if self.permission is None:
            return
        method_arn = f"arn:aws:execute-api:{self.region}:{self.account}:{self.api_id}/{self.stage}/{method}{path}"
        allowed, message = self.permission(credential, method_arn)
        if not allowed:
            body = json.dumps({"Message": message}).encode()
            raise RefusedError(GatewayResponse(403, {"Content-Type": "application/json",
                                                     "x-amzn-ErrorType": "AccessDeniedException"}, body))

    def event(self, method: str, parts: Any, matched: tuple[str, dict[str, str]], headers: list[tuple[str, str]],
              body: bytes, source_ip: str, credential: Credential, request_id: str) -> dict[str, Any]:
        template, path_params = matched
        multi_headers: dict[str, list[str]] = {}
        for name, value in headers:
            multi_headers.setdefault(name, []).append(value)
        query_pairs = parse_qsl(parts.query, keep_blank_values=True)
        multi_query: dict[str, list[str]] = {}
        for name, value in query_pairs:
            multi_query.setdefault(name, []).append(value)
        try:
            text, is_b64 = (body.decode("utf-8"), False) if body else (None, False)
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
        caller = self.caller_id_of(credential)
        now = self.clock.now()
        user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
        return {
            "resource": template,
            "path": parts.path,
            "httpMethod": method,
            "headers": {name: values[-1] for name, values in multi_headers.items()},
            "multiValueHeaders": multi_headers,
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "body": text,
            "isBase64Encoded": is_b64,
            "requestContext": {
                "accountId": self.account,
                "apiId": self.api_id,
                "domainName": next((v for k, v in headers if k.lower() == "host"), ""),
                "domainPrefix": self.api_id,
                "extendedRequestId": request_id,
                "httpMethod": method,
                "path": f"/{self.stage}{parts.path}",
                "protocol": "HTTP/1.1",
                "requestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "resourceId": "local",
                "resourcePath": template,
                "stage": self.stage,
                "identity": {
                    "accessKey": credential.access_key_id,
                    "accountId": credential.account,
                    "caller": caller,
                    "cognitoAuthenticationProvider": None,
                    "cognitoAuthenticationType": None,
                    "cognitoIdentityId": None,
                    "cognitoIdentityPoolId": None,
                    "principalOrgId": self.org_id_of(credential.account),
                    "sourceIp": source_ip,
                    "user": caller,
                    "userAgent": user_agent,
                    "userArn": credential.principal_arn,
                },
            },
        }


def _single_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in seen:
            out[seen[key]] = f"{out[seen[key]]},{value}"
        else:
            seen[key] = name
            out[name] = value
    return out


def _from_proxy_result(result: Any) -> GatewayResponse:
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return _error(502, "InternalServerErrorException", "Internal server error")
    headers: dict[str, str] = {}
    for name, value in (result.get("headers") or {}).items():
        headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ",".join(str(v) for v in values)
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return GatewayResponse(result["statusCode"], headers, raw)


def thread_local_requests(app: Any) -> Any:
    """Give each thread its own ``current_request`` and ``lambda_context`` on a Chalice app
    (Chalice sets both on the app object for every event). Idempotent; returns ``app``."""
    cls = type(app)
    if getattr(cls, "_rdsvend_thread_local", False):
        return app
    local = threading.local()

    def slot(name: str) -> property:
        return property(lambda self: getattr(local, name, None),
                        lambda self, value: setattr(local, name, value))

    app.__class__ = type(cls.__name__, (cls,), {
        "_rdsvend_thread_local": True,
        "current_request": slot("current_request"),
        "lambda_context": slot("lambda_context"),
    })
    return app


def _handler_for(gateway: Gateway) -> type[LoopbackHandler]:
    class Handler(LoopbackHandler):
        server_version = "rdsvend-local-gateway"
        max_body = MAX_BODY_BYTES

        def bad_length(self) -> HttpAnswer:
            return _error(400, "BadRequestException", "Invalid Content-Length")

        def too_large(self) -> HttpAnswer:
            return _error(413, "RequestTooLargeException", "Request Too Long")

        def answer(self, body: bytes) -> HttpAnswer:
            return gateway.handle(self.command, self.path, list(self.headers.items()), body, self.client_address[0])

    return Handler
