"""Verify AWS Signature Version 4 the way AWS does, for the local stack.

Two shapes of signed request reach the local stack: header-signed HTTP requests (the
gateway, service ``execute-api``) and presigned URLs (RDS IAM tokens, service ``rds-db``).
Both are checked here by recomputing the signature with botocore's own ``SigV4Auth`` /
``SigV4QueryAuth`` canonicalisation, with the request's timestamp as the signing time, and
comparing in constant time.

A failure raises :class:`SignatureError` with a short ``reason`` (``missing``,
``malformed``, ``unknown_key``, ``bad_signature``, ``stale``, ``expired``,
``expires_too_long``, ``wrong_service``, ``wrong_region``, ``bad_session_token``). Its text
never carries the signature, the secret key or the session token.

Errors raised by the :class:`SecretLookup` itself (the local AWS is down) propagate
unchanged: they are "could not check", not "bad signature".
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from urllib.parse import SplitResult, unquote, urlsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import ReadOnlyCredentials

from chalicelib.errors import SignatureError
from devtools.local.credentials import Credential, SecretLookup, StaticSecretLookup

__all__ = [
    "ALGORITHM",
    "Credential",
    "SecretLookup",
    "StaticSecretLookup",
    "SignatureError",
    "VerifiedRequest",
    "verify_header_signed",
    "verify_presigned",
]

ALGORITHM = "AWS4-HMAC-SHA256"
_MAX_QUERY_PARAMS = 64
_MAX_URL_LENGTH = 16 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DATE8 = re.compile(r"\d{8}")
#: Query parameters that carry the signature itself, not the operation.
_AUTH_PARAMS = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    }
)


@dataclass(frozen=True)
class VerifiedRequest:
    """What a valid signature proves.

    ``params`` holds the decoded query parameters other than the ``X-Amz-*`` signing ones
    (for an RDS token: ``Action`` and ``DBUser``). ``host`` is the signed host (with the
    port when it is not the scheme's default). ``expires_at`` is ``None`` for header-signed
    requests.
    """

    credential: Credential
    service: str
    region: str
    signed_at: datetime
    expires_at: datetime | None
    host: str
    path: str
    params: Mapping[str, str]
    signed_headers: tuple[str, ...]


class _ClaimedHeadersSigV4Auth(SigV4Auth):
    """botocore's SigV4 canonicalisation over exactly the headers the client says it signed."""

    def __init__(self, credentials: ReadOnlyCredentials, service_name: str, region_name: str,
                 signed: tuple[str, ...]) -> None:
        super().__init__(credentials, service_name, region_name)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name in self._signed:
            header_map[name] = request.headers.get(name, "")
        return header_map


@dataclass(frozen=True)
class _Scope:
    access_key_id: str
    date: str
    region: str
    service: str


def _parse_scope(value: str) -> _Scope:
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        raise SignatureError("malformed", "credential scope is not KEY/DATE/REGION/SERVICE/aws4_request")
    if not _DATE8.fullmatch(parts[1]):
        raise SignatureError("malformed", "credential scope date is not YYYYMMDD")
    return _Scope(parts[0], parts[1], parts[2], parts[3])


def _parse_timestamp(value: str) -> datetime:
    try:
        return datetime.strptime(value, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("malformed", "'X-Amz-Date' is not YYYYMMDDTHHMMSSZ") from None


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _check_scope(scope: _Scope, timestamp: str, service: str, region: str | None) -> None:
    if scope.date != timestamp[:8]:
        raise SignatureError("malformed", "credential scope date does not match the signing date")
    if scope.service != service:
        raise SignatureError("wrong_service", f"signed for service '{scope.service}', expected '{service}'")
    if region is not None and scope.region != region:
        raise SignatureError("wrong_region", f"signed for region '{scope.region}', expected '{region}'")


def _lookup(lookup: SecretLookup, access_key_id: str) -> Credential:
    credential = lookup.secret_for(access_key_id)
    if credential is None:
        raise SignatureError("unknown_key", f"no such access key '{access_key_id}'")
    return credential


def _check_session_token(credential: Credential, presented: str | None) -> None:
    expected = credential.session_token
    if expected is None:
        if presented is not None:
            raise SignatureError("bad_session_token", "a session token was sent with a long-term key")
        return
    if presented is None:
        raise SignatureError("bad_session_token", "the session token is missing")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise SignatureError("bad_session_token", "the session token does not match the key")


def _compare(computed: str, presented: str) -> None:
    if not hmac.compare_digest(computed.encode(), presented.encode()):
        raise SignatureError("bad_signature", "the signature does not match")


def _decoded_query(query: str) -> list[tuple[str, str]]:
    if not query:
        return []
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((unquote(key), unquote(value)))
    if len(pairs) > _MAX_QUERY_PARAMS:
        raise SignatureError("malformed", "too many query parameters")
    return pairs


def _readonly(credential: Credential) -> ReadOnlyCredentials:
    return ReadOnlyCredentials(credential.access_key_id, credential.secret_key, credential.session_token)


def _signature_for(
    signer: SigV4Auth, method: str, url: str, params: list[tuple[str, str]], headers: Mapping[str, str],
    body: bytes, timestamp: str,
) -> str:
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body,
                         params=params or None)  # type: ignore[arg-type]  # botocore urlencodes a list of pairs (repeated keys); its stubs say Mapping
    request.context["timestamp"] = timestamp
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower().strip()
        if key in lowered:
            raise SignatureError("malformed", f"header '{key}' given twice")
        lowered[key] = value
    return lowered


def _parse_authorization(value: str) -> tuple[_Scope, tuple[str, ...], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError("malformed", f"'Authorization' algorithm is not {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or key in fields:
            raise SignatureError("malformed", "'Authorization' is not Credential=, SignedHeaders=, Signature=")
        fields[key] = val.strip()
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise SignatureError("malformed", "'Authorization' is not Credential=, SignedHeaders=, Signature=")
    signature = fields["Signature"]
    if not _HEX64.fullmatch(signature):
        raise SignatureError("malformed", "'Authorization' signature is not 64 hex digits")
    return _parse_scope(fields["Credential"]), _parse_signed_headers(fields["SignedHeaders"]), signature


def _parse_signed_headers(value: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not value or any(not n or n != n.lower().strip() for n in names) or list(names) != sorted(set(names)):
        raise SignatureError("malformed", "signed headers are not a sorted, lowercase ';' list")
    if "host" not in names:
        raise SignatureError("malformed", "the 'host' header is not signed")
    return names


def _claimed_signature(lowered: Mapping[str, str]) -> tuple[_Scope, tuple[str, ...], str]:
    """The scope, signed header names and signature the ``Authorization`` header claims; every
    header it names as signed must be in the request."""
    authorization = lowered.get("authorization")
    if not authorization:
        raise SignatureError("missing", "no 'Authorization' header")
    scope, signed, presented = _parse_authorization(authorization)
    missing = [name for name in signed if name not in lowered]
    if "x-amz-security-token" in missing:
        raise SignatureError("bad_session_token", "the session token is missing")
    if missing:
        raise SignatureError("malformed", f"signed header '{missing[0]}' is not in the request")
    return scope, signed, presented


def _signing_time(lowered: Mapping[str, str]) -> tuple[str, datetime]:
    """The signing timestamp (``X-Amz-Date``, else the HTTP ``Date``) as SigV4 writes it, and as a time."""
    if "x-amz-date" in lowered:
        timestamp = lowered["x-amz-date"].strip()
        return timestamp, _parse_timestamp(timestamp)
    if "date" not in lowered:
        raise SignatureError("missing", "no 'X-Amz-Date' or 'Date' header")
    try:
        signed_at = _utc(parsedate_to_datetime(lowered["date"]))
    except (TypeError, ValueError):
        raise SignatureError("malformed", "'Date' is not an HTTP date") from None
    return signed_at.strftime(SIGV4_TIMESTAMP), signed_at


def verify_header_signed(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    service: str,
    lookup: SecretLookup,
    now: datetime,
    max_skew: timedelta = timedelta(minutes=5),
    region: str | None = None,
) -> VerifiedRequest:
    """Verify a request signed in its ``Authorization`` header; return what it proves.

    ``url`` is the request URL as received (path and query exactly as sent, percent-encoding
    untouched); ``headers`` the received headers. The signing time (``X-Amz-Date``, or
    ``Date``) must be within ``max_skew`` of ``now``. A payload hash header, when sent, must
    be the body's. Session credentials must send their token as ``X-Amz-Security-Token``
    and sign it.
    """
    if len(url) > _MAX_URL_LENGTH:
        raise SignatureError("malformed", "the URL is too long")
    lowered = _lower_headers(headers)
    scope, signed, presented = _claimed_signature(lowered)
    timestamp, signed_at = _signing_time(lowered)
    _check_scope(scope, timestamp, service, region)
    credential = _lookup(lookup, scope.access_key_id)
    token = lowered.get("x-amz-security-token")
    if token is not None and "x-amz-security-token" not in signed:
        raise SignatureError("bad_session_token", "the session token is not signed")
    _check_session_token(credential, token)
    content_hash = lowered.get("x-amz-content-sha256")
    if content_hash is not None and content_hash != hashlib.sha256(body).hexdigest():
        raise SignatureError("bad_signature", "'X-Amz-Content-SHA256' is not the body's hash")

    parts = urlsplit(url)
    bare_url = f"{parts.scheme or 'http'}://{parts.netloc or lowered['host']}{parts.path or '/'}"
    signer = _ClaimedHeadersSigV4Auth(_readonly(credential), scope.service, scope.region, signed)
    computed = _signature_for(
        signer, method, bare_url, _decoded_query(parts.query), {n: lowered[n] for n in signed}, body, timestamp
    )
    _compare(computed, presented)

    skew = abs(_utc(now) - signed_at)
    if skew > max_skew:
        raise SignatureError("stale", f"signed {int(skew.total_seconds())} s away from now")
    params = {k: v for k, v in _decoded_query(parts.query) if k not in _AUTH_PARAMS}
    return VerifiedRequest(
        credential=credential,
        service=scope.service,
        region=scope.region,
        signed_at=signed_at,
        expires_at=None,
        host=lowered["host"],
        path=parts.path or "/",
        params=MappingProxyType(params),
        signed_headers=signed,
    )


def _split_presigned(url_or_token: str) -> tuple[SplitResult, list[tuple[str, str]], dict[str, str]]:
    """A presigned URL (an RDS token has no scheme: https) as its parts, its decoded query
    pairs in order, and those pairs as a map (a parameter given twice is refused)."""
    if not url_or_token:
        raise SignatureError("missing", "no presigned URL")
    if len(url_or_token) > _MAX_URL_LENGTH:
        raise SignatureError("malformed", "the presigned URL is too long")
    url = url_or_token if "://" in url_or_token else f"https://{url_or_token}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise SignatureError("malformed", "the presigned URL is not a URL") from None
    if not parts.netloc or parts.fragment or "@" in parts.netloc:
        raise SignatureError("malformed", "the presigned URL has no plain host")
    pairs = _decoded_query(parts.query)
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise SignatureError("malformed", f"query parameter '{key}' given twice")
        query[key] = value
    return parts, pairs, query


def _presigned_fields(query: Mapping[str, str], max_expires: int) -> tuple[str, int]:
    """The presented signature and the lifetime in seconds, once every ``X-Amz-*`` parameter
    a presigned URL needs is there and well formed (only ``host`` signed)."""
    if "X-Amz-Signature" not in query or "X-Amz-Credential" not in query:
        raise SignatureError("missing", "no 'X-Amz-Signature' or 'X-Amz-Credential'")
    for name in ("X-Amz-Algorithm", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"):
        if name not in query:
            raise SignatureError("malformed", f"no '{name}'")
    if query["X-Amz-Algorithm"] != ALGORITHM:
        raise SignatureError("malformed", f"'X-Amz-Algorithm' is not {ALGORITHM}")
    presented = query["X-Amz-Signature"]
    if not _HEX64.fullmatch(presented):
        raise SignatureError("malformed", "'X-Amz-Signature' is not 64 hex digits")
    if query["X-Amz-SignedHeaders"] != "host":
        raise SignatureError("malformed", "'X-Amz-SignedHeaders' must be 'host'")
    expires_raw = query["X-Amz-Expires"]
    if not expires_raw.isdigit() or len(expires_raw) > 7 or int(expires_raw) < 1:
        raise SignatureError("malformed", "'X-Amz-Expires' is not a positive number of seconds")
    expires = int(expires_raw)
    if expires > max_expires:
        raise SignatureError("expires_too_long", f"'X-Amz-Expires' is {expires} s, at most {max_expires} allowed")
    return presented, expires


def _check_window(signed_at: datetime, expires: int, now_utc: datetime, max_skew: timedelta) -> datetime:
    """When the URL expires; refused when signed more than ``max_skew`` ahead of now, or expired."""
    if signed_at - now_utc > max_skew:
        raise SignatureError("stale", "signed too far in the future")
    expires_at = signed_at + timedelta(seconds=expires)
    if now_utc > expires_at:
        raise SignatureError("expired", f"expired {int((now_utc - expires_at).total_seconds())} s ago")
    return expires_at


def verify_presigned(
    url_or_token: str,
    *,
    service: str,
    lookup: SecretLookup,
    now: datetime,
    max_expires: int = 900,
    max_skew: timedelta = timedelta(minutes=5),
    region: str | None = None,
    method: str = "GET",
) -> VerifiedRequest:
    """Verify a presigned URL, or an RDS token (``host:port/?Action=connect&...``).

    Only ``host`` may be signed (there are no other headers to check). ``X-Amz-Expires``
    must be between 1 and ``max_expires`` seconds; the URL must not have expired at
    ``now`` and must not be signed more than ``max_skew`` in the future.
    """
    parts, pairs, query = _split_presigned(url_or_token)
    presented, expires = _presigned_fields(query, max_expires)
    timestamp = query["X-Amz-Date"]
    signed_at = _parse_timestamp(timestamp)
    scope = _parse_scope(query["X-Amz-Credential"])
    _check_scope(scope, timestamp, service, region)
    credential = _lookup(lookup, scope.access_key_id)
    _check_session_token(credential, query.get("X-Amz-Security-Token"))

    signer = SigV4QueryAuth(_readonly(credential), scope.service, scope.region, expires=expires)
    bare_url = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
    signed_pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    computed = _signature_for(signer, method, bare_url, signed_pairs, {}, b"", timestamp)
    _compare(computed, presented)

    expires_at = _check_window(signed_at, expires, _utc(now), max_skew)
    signed_host = signer.headers_to_sign(AWSRequest(method=method, url=bare_url))["host"]
    params = {k: v for k, v in pairs if k not in _AUTH_PARAMS}
    return VerifiedRequest(
        credential=credential,
        service=scope.service,
        region=scope.region,
        signed_at=signed_at,
        expires_at=expires_at,
        host=signed_host,
        path=parts.path or "/",
        params=MappingProxyType(params),
        signed_headers=("host",),
    )

