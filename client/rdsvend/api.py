"""The rdsvend HTTP API as a client sees it: SigV4-signed calls, typed answers.

Requests are signed with botocore's ``SigV4Auth`` for service ``execute-api`` using the
caller's usual credential chain (environment, profile, SSO, container or instance role).
The endpoint is the rdsvend URL (``--url`` / ``RDSVEND_URL``); ``AWS_ENDPOINT_URL`` plays no
part in it. Errors become :class:`VendError` carrying the service's code; the text of an
error never contains a token, a signature or credentials.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

from rdsvend.clock import SYSTEM_CLOCK, Clock
from rdsvend.errors import RETRYABLE_STATUSES, VendError

__all__ = ["VendError", "VendedToken", "VendApi", "RETRYABLE_STATUSES", "CREDENTIAL_ERROR_TYPES"]

_EXECUTE_API_HOST = re.compile(r"\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_CODE_FOR_STATUS = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    429: "rate_limited",
    500: "internal",
    502: "upstream_unavailable",
    503: "upstream_unavailable",
    504: "upstream_unavailable",
}
_MAX_ANSWER_BYTES = 256 * 1024
#: API Gateway's ``x-amzn-ErrorType`` for a request whose signature or credentials it refused.
CREDENTIAL_ERROR_TYPES = frozenset({
    "InvalidSignatureException", "IncompleteSignatureException", "UnrecognizedClientException",
    "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch",
})


@dataclass(frozen=True)
class VendedToken:
    """A vended token and where it works. ``repr`` never shows the token."""

    token: str = field(repr=False)
    expires_at: datetime
    ttl_seconds: int
    database: str
    db_user: str
    engine: str
    host: str
    port: int
    #: ``None`` when the policy declares no ``dbname``: the login's default database is used
    dbname: str | None
    region: str
    sslmode: str
    ssl_root_cert: str
    dsn: str
    rule: str | None
    #: The client's monotonic clock when the answer arrived; expiry is judged from it and
    #: ``ttl_seconds`` so that a skewed local wall clock does not matter.
    received_at: float = 0.0
    #: MySQL family: the client auth plugin that carries the token (``mysql_clear_password``)
    auth_plugin: str | None = None

    @property
    def expires_monotonic(self) -> float:
        return self.received_at + self.ttl_seconds

    def to_body(self) -> dict[str, Any]:
        """The service's answer again (the HTTP API's field names), token included."""
        return {
            "token": self.token,
            "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ttl_seconds": self.ttl_seconds,
            "database": self.database,
            "db_user": self.db_user,
            "engine": self.engine,
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "region": self.region,
            "sslmode": self.sslmode,
            "ssl_root_cert": self.ssl_root_cert,
            "dsn": self.dsn,
            "rule": self.rule,
            **({"auth_plugin": self.auth_plugin} if self.auth_plugin else {}),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], received_at: float) -> VendedToken:
        try:
            expires_at = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00"))
            return cls(
                token=_str(body, "token"),
                expires_at=expires_at,
                ttl_seconds=int(body["ttl_seconds"]),
                database=_str(body, "database"),
                db_user=_str(body, "db_user"),
                engine=_str(body, "engine"),
                host=_str(body, "host"),
                port=int(body["port"]),
                dbname=_optional_str(body, "dbname"),
                region=_str(body, "region"),
                sslmode=str(body.get("sslmode") or "verify-full"),
                ssl_root_cert=str(body.get("ssl_root_cert") or ""),
                dsn=str(body.get("dsn") or ""),
                rule=body.get("rule") if isinstance(body.get("rule"), str) else None,
                received_at=received_at,
                auth_plugin=body.get("auth_plugin") if isinstance(body.get("auth_plugin"), str) else None,
            )
        except (KeyError, TypeError, ValueError):
            raise VendError("bad_answer", "the service's answer is missing or mistypes a field") from None


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value:
        raise ValueError(key)
    return value


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    """A field the service always sends but may set to null (``dbname``)."""
    return None if body[key] is None else _str(body, key)


class VendApi:
    """``POST /v1/tokens``, ``GET /v1/databases`` and ``GET /v1/whoami``, SigV4-signed."""

    def __init__(
        self,
        url: str | None = None,
        *,
        session: Any | None = None,
        region: str | None = None,
        timeout: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        url = url or os.environ.get("RDSVEND_URL", "")
        if not url:
            raise ValueError("no rdsvend URL: pass --url or set RDSVEND_URL")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"rdsvend URL '{url}' is not an http(s) URL")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.clock = clock
        self._session = session
        self._region = region
        self._http: Any | None = None

    # -- public calls

    def vend(self, database: str, db_user: str) -> VendedToken:
        body = self.call("POST", "/v1/tokens", {"database": database, "db_user": db_user})
        return VendedToken.from_body(body, received_at=self.clock.monotonic())

    def databases(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/v1/databases").get("databases", []))

    def whoami(self) -> dict[str, Any]:
        return self.call("GET", "/v1/whoami")

    # -- plumbing

    def region(self) -> str:
        if self._region:
            return self._region
        match = _EXECUTE_API_HOST.search(urlsplit(self.url).hostname or "")
        if match:
            return match["region"]
        return self._core().get_config_variable("region") or "us-east-1"

    def _core(self) -> Any:
        import botocore.session

        if self._session is None:
            self._session = botocore.session.get_session()
        return getattr(self._session, "_session", self._session)

    def _pool(self) -> Any:
        if self._http is None:
            import urllib3
            from botocore.httpsession import get_cert_path

            self._http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=get_cert_path(True))
        return self._http

    def call(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        import urllib3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._core().get_credentials()
        if credentials is None:
            raise VendError("no_credentials", "no AWS credentials found to sign the request")
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = AWSRequest(method=method, url=self.url + path, data=data, headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region()).add_auth(request)
        prepared = request.prepare()
        try:
            response = self._pool().request(
                method,
                prepared.url,
                body=prepared.body,
                headers=dict(prepared.headers.items()),
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=min(5.0, self.timeout), read=self.timeout),
                preload_content=False,
            )
            raw = response.read(_MAX_ANSWER_BYTES + 1)
            response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise VendError(
                "unreachable", f"cannot reach {self.url} ({type(exc).__name__})"
            ) from None
        return _answer(response.status, response.headers, raw)


def _answer(status: int, headers: Any, raw: bytes) -> dict[str, Any]:
    body: Any
    try:
        body = json.loads(raw) if raw and len(raw) <= _MAX_ANSWER_BYTES else None
    except ValueError:
        body = None
    if status == 200:
        if not isinstance(body, dict):
            raise VendError("bad_answer", "the service's answer is not a JSON object", status=status)
        answer: dict[str, Any] = body
        return answer
    retry_after = _retry_after(headers.get("Retry-After"))
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        _raise(
            str(error["code"]),
            str(error.get("message") or "")[:300],
            status,
            error.get("request_id") if isinstance(error.get("request_id"), str) else None,
            retry_after,
        )
    # Not rdsvend's error model: API Gateway's own answers (a refused signature, throttling).
    gateway = _gateway_refusal(headers.get("x-amzn-ErrorType"), body)
    if gateway is not None:
        _raise(gateway[0], gateway[1], status, None, retry_after)
    code = _CODE_FOR_STATUS.get(status, "http_error")
    _raise(code, f"HTTP {status} from the gateway", status, None, retry_after)


def _gateway_refusal(error_type: str | None, body: Any) -> tuple[str, str] | None:
    """``(code, message)`` for API Gateway's refusal of the request's signature or credentials.

    The gateway's message is shown up to its first line break: what follows
    (``The Canonical String for this request should have been ...``) may echo signed headers,
    the session token among them, so it never leaves this function."""
    kind = (error_type or "").split(":", 1)[0].strip()
    if kind == "MissingAuthenticationTokenException":
        return "bad_url", ("the gateway knows no such route (a signed request to a path that does not exist: "
                           "check the rdsvend URL and its stage)")
    if kind not in CREDENTIAL_ERROR_TYPES:
        return None
    raw = body.get("message") if isinstance(body, dict) else None
    message = str(raw).split("\n", 1)[0].strip()[:300] if isinstance(raw, str) and raw.strip() else kind
    return "bad_credentials", f"{message} ({kind}: check your AWS credentials, not rdsvend's policy)"


def _raise(code: str, message: str, status: int, request_id: str | None, retry_after: float | None) -> NoReturn:
    raise VendError(code, message or code, status=status, request_id=request_id, retry_after=retry_after)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: treat as absent, the caller's backoff applies
    return max(0.0, min(seconds, 3600.0))
