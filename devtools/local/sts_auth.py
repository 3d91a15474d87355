"""The local AWS's STS checks signatures, as AWS STS does.

moto answers an STS request for whichever access key id its ``Authorization`` header names,
without checking the signature. For most of the local stack that does not matter, but a
direct invoke's identity proof *is* a signed ``sts:GetCallerIdentity`` request: rdsvend
trusts STS's answer because only STS can check the signature. :class:`StsSignatureCheck`
wraps the moto server's WSGI app and verifies every header-signed STS request with the local
SigV4 verifier (:mod:`devtools.local.sigv4`, the gateway's) against the local AWS's keys and
session credentials, answering a refusal the way STS does (403, ``SignatureDoesNotMatch`` /
``InvalidClientTokenId`` / ``ExpiredToken``, in STS's XML error shape).

It also decides ``AssumeRole`` as STS does, which moto does not (it lets anyone assume any
role, even one that does not exist): the role must exist, its trust policy must name the
caller or the caller's account, and the caller's own policies and the SCPs must allow it
(:func:`devtools.local.permissions.assume_role_permission`); otherwise 403 ``AccessDenied``.

Requests that act through moto's ``x-moto-account-id`` header (the stack's own seeding, as
the management account, which has no IAM user to sign as) are passed through unchanged.
"""
from __future__ import annotations

import io
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs
from wsgiref.types import WSGIApplication
from xml.sax.saxutils import escape

from chalicelib.clock import SYSTEM_CLOCK, Clock
from devtools.local.sigv4 import Credential, SecretLookup, SignatureError, VerifiedRequest, verify_header_signed

__all__ = ["StsSignatureCheck", "MAX_SKEW"]

log = logging.getLogger(__name__)

#: AWS accepts a signing time up to 15 minutes away from its own clock.
MAX_SKEW = timedelta(minutes=15)
_STS_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/sts/aws4_request")
_MAX_BODY = 64 * 1024
_BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                  "Secret Access Key and signing method. Consult the service documentation for details.")


def _error(start_response: Callable[..., Any], code: str, message: str, status: str = "403 Forbidden") -> list[bytes]:
    body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()
    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


class StsSignatureCheck:
    """WSGI middleware: header-signed STS requests must carry a valid signature."""

    def __init__(self, app: WSGIApplication, lookup: SecretLookup, *, clock: Clock = SYSTEM_CLOCK,
                 assume_role: Callable[[str, str, str], tuple[bool, str]] | None = None) -> None:
        self.app = app
        self.lookup = lookup
        self.clock = clock
        self.assume_role = assume_role

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if not _STS_SCOPE.search(authorization) or "HTTP_X_MOTO_ACCOUNT_ID" in environ:
            return self.app(environ, start_response)
        try:
            body = _read_body(environ)
            verified = self._verify(environ, body)
            params = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(body.decode("utf-8", "replace"))
            if self.assume_role is not None and (params.get("Action") or [""])[0] == "AssumeRole":
                self._check_assume_role(self.assume_role, verified.credential, (params.get("RoleArn") or [""])[0])
        except _RefusedError as refused:
            return _error(start_response, refused.code, refused.message, refused.status)
        return self.app(environ, start_response)

    def _verify(self, environ: dict[str, Any], body: bytes) -> VerifiedRequest:
        """The request's SigV4 signature (service ``sts``); a refusal worded as STS words it."""
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        query = environ.get("QUERY_STRING", "")
        if query and "?" not in raw_path:
            raw_path = f"{raw_path}?{query}"
        url = f"http://{headers.get('host', '')}{raw_path}"
        try:
            return verify_header_signed(environ.get("REQUEST_METHOD", "POST"), url, headers, body, service="sts",
                                        lookup=self.lookup, now=self.clock.now(), max_skew=MAX_SKEW)
        except SignatureError as exc:
            log.info("local sts refused a request: %s", exc.reason)
            code, message, status = _SIGNATURE_REFUSALS.get(exc.reason, _BAD_SIGNATURE_REFUSAL)
            raise _RefusedError(code, message, status) from None

    @staticmethod
    def _check_assume_role(assume_role: Callable[[str, str, str], tuple[bool, str]], caller: Credential,
                           role_arn: str) -> None:
        """The caller may ``sts:AssumeRole`` the role it names."""
        allowed, why = assume_role(caller.principal_arn, caller.account, role_arn)
        if not allowed:
            log.info("local sts refused AssumeRole of %s by %s: %s", role_arn[:200], caller.principal_arn, why)
            raise _RefusedError("AccessDenied",
                                f"User: {caller.principal_arn} is not authorized to perform: sts:AssumeRole on "
                                f"resource: {role_arn[:2048]}")


class _RefusedError(Exception):
    """A request STS refuses: its error code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: str = "403 Forbidden") -> None:
        super().__init__(code)
        self.code, self.message, self.status = code, message, status


#: how STS answers a signature failure, by :class:`SignatureError` reason (any other: a mismatch)
_BAD_SIGNATURE_REFUSAL = ("SignatureDoesNotMatch", _BAD_SIGNATURE, "403 Forbidden")
_INVALID_TOKEN = ("InvalidClientTokenId", "The security token included in the request is invalid.", "403 Forbidden")
_INCOMPLETE = ("IncompleteSignature", "The request signature is incomplete", "400 Bad Request")
_SIGNATURE_REFUSALS: dict[str, tuple[str, str, str]] = {
    "unknown_key": _INVALID_TOKEN,
    "bad_session_token": _INVALID_TOKEN,
    "stale": ("SignatureDoesNotMatch", "Signature expired", "403 Forbidden"),
    "missing": _INCOMPLETE,
    "malformed": _INCOMPLETE,
}


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body (at most 64 KiB), put back for the app behind to read."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise _RefusedError("InvalidRequest", "invalid Content-Length", "400 Bad Request") from None
    if length < 0 or length > _MAX_BODY:
        raise _RefusedError("InvalidRequest", "request body too large", "400 Bad Request")
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body
