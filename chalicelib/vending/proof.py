"""The direct-invoke identity proof: a SigV4-signed ``sts:GetCallerIdentity`` request.

A Lambda function that invokes ``vend`` cannot be authenticated by API Gateway, so it
proves who it is the way Vault's AWS IAM login does: it signs (but does not send) an
``sts:GetCallerIdentity`` request with its own credentials, including the header
``X-Rdsvend-Server-Id`` among the signed headers, and puts that request in the payload.
rdsvend forwards it to STS; only STS can check the signature, and STS's answer names the
caller.

Three stages, each its own function:

* the caller builds the proof with the client's ``rdsvend.proof.build_identity_proof``.
* :func:`parse_identity_proof` (pure): shape, size, the URL, the signed headers, the server
  id and the age. Structural problems raise :class:`InvalidRequestError` (400); a proof that
  is well formed but not acceptable raises :class:`IdentityProofError` (401).
* :class:`chalicelib.vending.verifier.StsVerifier` sends the checked request to the *configured* STS endpoint only
  (the transport, :mod:`chalicelib.vending.sts_transport`: no redirect, one deadline over
  connect, send and every read, the answer's size bounded), and reads the caller's ARN from
  STS's XML answer.

Where the proof's URL names another host than the configured STS endpoint, the proof is
rejected before any connection is made: rdsvend never contacts a host a caller chose, and
an error naming the mismatch is clearer than the signature failure STS would return after
a re-targeted request.

Nothing here puts the ``Authorization`` header, the session token or the signature in an
exception message or a log line.
"""
from __future__ import annotations

import hmac
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol
from urllib.parse import SplitResult, parse_qsl, urlsplit

from chalicelib.aws.errors import SERVER_FAULT_CODES, THROTTLING_CODES
from chalicelib.errors import (
    IdentityProofError,
    InvalidRequestError,
    UpstreamUnavailableError,
)
from chalicelib.settings import Settings

__all__ = [
    "SERVER_ID_HEADER",
    "MAX_PROOF_AGE",
    "ProofConfig",
    "StsRequest",
    "ProvenCaller",
    "StsAnswer",
    "StsTransport",
    "parse_identity_proof",
    "parse_sts_answer",
    "proof_config_from_env",
]

SERVER_ID_HEADER = "X-Rdsvend-Server-Id"
MAX_PROOF_AGE = timedelta(minutes=5)
#: A proof dated further in the future than this is refused too (clock skew bound).
MAX_FUTURE_SKEW = timedelta(minutes=5)

GET_CALLER_IDENTITY_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
_EXPECTED_FORM = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}

# Size limits: generous for a real proof (a session token is a few KiB), tight for abuse.
MAX_URL_CHARS = 2048
MAX_BODY_CHARS = 1024
MAX_HEADERS = 32
MAX_HEADER_NAME_CHARS = 128
MAX_HEADER_VALUE_CHARS = 8192
MAX_ANSWER_BYTES = 64 * 1024

_IDENTITY_KEYS = frozenset({"url", "method", "headers", "body"})
# Hop-by-hop and framing headers: a proof has no business setting them.
_FORBIDDEN_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-authorization",
        "proxy-connection",
    }
)
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 "
    r"Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # header names: visible ASCII
_BAD_VALUE_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL and friends
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_THROTTLING_CODES = THROTTLING_CODES | SERVER_FAULT_CODES  # worth a retry: a 503 to the caller


@dataclass(frozen=True)
class ProofConfig:
    """What the ``vend`` function checks a proof against."""

    sts_endpoint: str
    server_id: str
    max_age: timedelta = MAX_PROOF_AGE
    connect_timeout: float = 2.0
    read_timeout: float = 3.0
    #: Hard bound on the whole exchange with STS (connect + send + read), seconds.
    total_timeout: float = 5.0

    def __post_init__(self) -> None:
        _origin(self.sts_endpoint, what="RDSVEND_STS_ENDPOINT", error=ValueError)
        if not self.server_id:
            raise ValueError("RDSVEND_SERVER_ID is empty")


def proof_config_from_env(environ: Mapping[str, str] | None = None) -> ProofConfig:
    """``RDSVEND_STS_ENDPOINT`` (default: the regional STS endpoint) and ``RDSVEND_SERVER_ID``.

    Raises :class:`ValueError` when the server id is not configured: without one, no proof
    can be bound to this server, so the function must refuse every proof (fail closed).
    """
    settings = Settings.from_env(environ)
    server_id = settings.server_id
    if not server_id:
        raise ValueError("RDSVEND_SERVER_ID is not set")
    endpoint = settings.sts_endpoint
    if not endpoint:
        endpoint = f"https://sts.{settings.region or 'us-east-1'}.amazonaws.com"
    return ProofConfig(sts_endpoint=endpoint, server_id=server_id)


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class StsRequest:
    """A checked proof, ready to send to the configured endpoint."""

    url: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes = field(repr=False)
    access_key_id: str
    signed_at: datetime


@dataclass(frozen=True)
class ProvenCaller:
    """Who STS says signed the proof."""

    arn: str
    account: str
    user_id: str
    access_key_id: str


@dataclass(frozen=True)
class StsAnswer:
    status: int
    body: bytes = field(repr=False)


class StsTransport(Protocol):
    def send(self, request: StsRequest, config: ProofConfig) -> StsAnswer:
        """POST the request to ``request.url`` once; no redirects; bounded in time and size."""


def parse_identity_proof(proof: Any, config: ProofConfig, now: datetime) -> StsRequest:
    """Check a proof without any network access. See the module docstring for the rules."""
    url, method, body, headers = _shape(proof)
    parts = _check_request(url, method, body, config)
    signature = _signature(headers)
    _check_server_id(headers, signature.signed, config)
    signed_at = _signed_at(headers, signature, config, now)
    host = headers.get("host")
    if host is not None and _origin(
        f"{parts.scheme}://{host}/", what="Host", error=IdentityProofError
    ) != _origin(config.sts_endpoint, what="RDSVEND_STS_ENDPOINT", error=ValueError):
        raise IdentityProofError("identity proof: header 'Host' is not this server's STS endpoint")
    content_length = headers.get("content-length")
    if content_length is not None and content_length != str(len(body.encode())):
        raise IdentityProofError("identity proof: header 'Content-Length' does not match the body")

    # Forward what was signed plus the signature itself; nothing the caller did not sign.
    forwarded = [(name, headers[name]) for name in signature.signed if name in headers]
    forwarded.append(("authorization", signature.authorization))
    if host is None:
        forwarded.append(("host", _host_header(config.sts_endpoint)))
    return StsRequest(
        url=config.sts_endpoint.rstrip("/") + "/",
        headers=tuple(forwarded),
        body=body.encode(),
        access_key_id=signature.credential[0],
        signed_at=signed_at,
    )


class _Signature(NamedTuple):
    """The parts of a proof's ``Authorization`` header the checks read."""

    authorization: str
    credential: list[str]  # access key id, date, region, service, "aws4_request"
    signed: list[str]  # SignedHeaders, lowercase and sorted


def _shape(proof: Any) -> tuple[str, str, str, dict[str, str]]:
    """The proof's url, method, body and (lower-cased) headers; a 400 for any other shape."""
    if not isinstance(proof, dict):
        raise InvalidRequestError("field 'identity' must be an object", field="identity")
    extra = sorted(set(proof) - _IDENTITY_KEYS)
    if extra:
        raise InvalidRequestError(
            f"unknown field '{_clip(str(extra[0]))}' in 'identity'", field="identity"
        )
    url = _string(proof, "url", MAX_URL_CHARS)
    method = _string(proof, "method", 16)
    body = _string(proof, "body", MAX_BODY_CHARS)
    return url, method, body, _headers(proof.get("headers"))


def _check_request(url: str, method: str, body: str, config: ProofConfig) -> SplitResult:
    """A POST of GetCallerIdentity to the root of this server's STS endpoint; the URL's parts."""
    if method != "POST":
        raise IdentityProofError("identity proof: method must be 'POST'")
    if _origin(url, what="identity.url", error=IdentityProofError) != _origin(
        config.sts_endpoint, what="RDSVEND_STS_ENDPOINT", error=ValueError
    ):
        raise IdentityProofError("identity proof: url is not this server's STS endpoint")
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise IdentityProofError("identity proof: url must be the STS endpoint's root path")
    form = parse_qsl(body, keep_blank_values=True, strict_parsing=False)
    if len(form) != len(_EXPECTED_FORM) or dict(form) != _EXPECTED_FORM:
        raise IdentityProofError("identity proof: body must be a GetCallerIdentity request")
    return parts


def _signature(headers: dict[str, str]) -> _Signature:
    """A SigV4 ``Authorization`` header scoped to STS, whose signed headers are all present."""
    authorization = headers.get("authorization")
    if authorization is None:
        raise IdentityProofError("identity proof: header 'Authorization' is missing")
    match = _AUTH_RE.match(authorization)
    if match is None:
        raise IdentityProofError("identity proof: header 'Authorization' is not AWS SigV4")
    credential = match["credential"].split("/")
    if len(credential) != 5 or credential[3] != "sts" or credential[4] != "aws4_request":
        raise IdentityProofError("identity proof: credential scope is not for service 'sts'")
    signed = match["signed"].split(";")
    if signed != sorted(set(signed)):
        raise IdentityProofError("identity proof: SignedHeaders is not a sorted list")
    for name in signed:
        if name not in headers and name != "host":
            raise IdentityProofError(f"identity proof: signed header '{name}' is missing")
    return _Signature(authorization, credential, signed)


def _check_server_id(headers: dict[str, str], signed: list[str], config: ProofConfig) -> None:
    """The proof is bound to this server: the server id header is present, signed and ours."""
    server_id = headers.get(SERVER_ID_HEADER.lower())
    if server_id is None:
        raise IdentityProofError(f"identity proof: header '{SERVER_ID_HEADER}' is missing")
    if SERVER_ID_HEADER.lower() not in signed:
        raise IdentityProofError(f"identity proof: header '{SERVER_ID_HEADER}' is not signed")
    if not hmac.compare_digest(server_id.encode(), config.server_id.encode()):
        raise IdentityProofError(
            f"identity proof: header '{SERVER_ID_HEADER}' does not name this server"
        )


def _signed_at(headers: dict[str, str], signature: _Signature, config: ProofConfig, now: datetime) -> datetime:
    """When the proof was signed (its signed ``X-Amz-Date``, matching the credential's date),
    refused when older than the configured age or dated in the future."""
    amz_date = headers.get("x-amz-date")
    if amz_date is None or "x-amz-date" not in signature.signed:
        raise IdentityProofError("identity proof: header 'X-Amz-Date' is missing or not signed")
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise IdentityProofError("identity proof: header 'X-Amz-Date' is malformed") from None
    if signature.credential[1] != amz_date[:8]:
        raise IdentityProofError("identity proof: credential date does not match 'X-Amz-Date'")
    if now - signed_at > config.max_age:
        minutes = int(config.max_age.total_seconds() // 60)
        raise IdentityProofError(f"identity proof: signature is older than {minutes} minutes")
    if signed_at - now > MAX_FUTURE_SKEW:
        raise IdentityProofError("identity proof: signature is dated in the future")
    return signed_at


def parse_sts_answer(answer: StsAnswer, access_key_id: str = "") -> ProvenCaller:
    """Read the caller from STS's XML answer; map STS errors to rejection or unavailability."""
    if 300 <= answer.status < 400:
        raise UpstreamUnavailableError("sts", detail=f"STS answered a redirect ({answer.status})")
    root = _xml(answer.body) if answer.body else None
    if answer.status != 200:
        code = _find_text(root, "Code") if root is not None else None
        if answer.status >= 500 or answer.status == 429 or code in _THROTTLING_CODES:
            raise UpstreamUnavailableError(
                "sts", detail=f"STS answered {answer.status} {code or ''}".strip()
            )
        error = IdentityProofError("identity proof rejected by STS")
        error.sts_code = code  # type: ignore[attr-defined]  # for the audit log
        raise error
    if root is None or _local(root.tag) != "GetCallerIdentityResponse":
        raise UpstreamUnavailableError("sts", detail="STS answer is not a GetCallerIdentity answer")
    arn = _find_text(root, "Arn")
    account = _find_text(root, "Account")
    user_id = _find_text(root, "UserId") or ""
    if not arn or not account:
        raise UpstreamUnavailableError("sts", detail="STS answer has no Arn or Account")
    return ProvenCaller(arn=arn, account=account, user_id=user_id, access_key_id=access_key_id)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _string(proof: dict[str, Any], key: str, limit: int) -> str:
    value = proof.get(key)
    if value is None:
        raise InvalidRequestError(f"missing field 'identity.{key}'", field=f"identity.{key}")
    if not isinstance(value, str):
        raise InvalidRequestError(f"field 'identity.{key}' must be a string", field=f"identity.{key}")
    if len(value) > limit:
        raise InvalidRequestError(
            f"field 'identity.{key}' is longer than {limit} characters", field=f"identity.{key}"
        )
    return value


def _headers(value: Any) -> dict[str, str]:
    """Lower-cased header map; duplicates (in any case), control characters, hop-by-hop refused."""
    where = "identity.headers"
    if value is None:
        raise InvalidRequestError(f"missing field '{where}'", field=where)
    if not isinstance(value, dict):
        raise InvalidRequestError(f"field '{where}' must be an object", field=where)
    if len(value) > MAX_HEADERS:
        raise InvalidRequestError(f"field '{where}' has more than {MAX_HEADERS} headers", field=where)
    headers: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name or len(name) > MAX_HEADER_NAME_CHARS:
            raise InvalidRequestError(f"field '{where}' has an invalid header name", field=where)
        if not _TOKEN_CHARS.match(name) or ":" in name:
            raise InvalidRequestError(f"field '{where}' has an invalid header name", field=where)
        shown = _clip(name)
        if not isinstance(item, str):
            raise InvalidRequestError(f"header '{shown}' in '{where}' must be a string", field=where)
        if len(item) > MAX_HEADER_VALUE_CHARS or _BAD_VALUE_CHARS.search(item) or not item.isascii():
            raise InvalidRequestError(f"header '{shown}' in '{where}' has an invalid value", field=where)
        lower = name.lower()
        if lower in _FORBIDDEN_HEADERS:
            raise InvalidRequestError(f"header '{shown}' is not allowed in '{where}'", field=where)
        if lower in headers:
            raise InvalidRequestError(f"header '{shown}' appears twice in '{where}'", field=where)
        headers[lower] = item.strip()
    return headers


def _origin(url: str, *, what: str, error: type[Exception]) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL with no user info; raises ``error`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise error(f"{what} is not a valid URL") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        raise error(f"{what} must be an http(s) URL with a host and no user info")
    return (parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme])


def _host_header(url: str) -> str:
    """The Host header botocore signs for ``url``: lowercase, default port left out."""
    scheme, host, port = _origin(url, what="url", error=ValueError)
    if ":" in host:
        host = f"[{host}]"
    return host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"


def _xml(body: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_text(root: ET.Element | None, name: str) -> str | None:
    if root is None:
        return None
    for element in root.iter():
        if _local(element.tag) == name:
            return (element.text or "").strip()
    return None
