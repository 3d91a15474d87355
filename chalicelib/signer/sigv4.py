"""SigV4 query presigning for ``rds-db:connect``: the RDS IAM auth token, fast.

Produces exactly the bytes botocore's ``generate_db_auth_token`` produces for the same
credentials, host, port, user, region and second (``tests/unit/test_signer_sigv4.py``
proves it), without building a request object per token: the derived signing key is
cached per (secret key, date, region, service) and the only per-token work is one
SHA-256 and one HMAC.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote, urlsplit

from chalicelib.signer.credentials import SigningCredentials

__all__ = ["SERVICE", "DSQL_SERVICE", "DSQL_ACTIONS", "EXPIRES_SECONDS", "DSQL_MAX_EXPIRES", "SigningKeyCache",
           "RdsTokenSigner", "DsqlTokenSigner", "host_header"]

SERVICE = "rds-db"
DSQL_SERVICE = "dsql"
DSQL_ACTIONS = frozenset({"DbConnect", "DbConnectAdmin"})
#: The longest a DSQL token may be signed for (DSQL's own limit: one week).
DSQL_MAX_EXPIRES = 604800
EXPIRES_SECONDS = 900
_ALGORITHM = "AWS4-HMAC-SHA256"
_SAFE = "-._~"  # botocore.utils.SAFE_CHARS
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # botocore signs the emptied body
_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?"
    r"|\[[0-9A-Fa-f:.]+\]"
)
_REGION_RE = re.compile(r"[a-z0-9-]{1,32}")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


class SigningKeyCache:
    """Derived SigV4 signing keys per (secret key, date, region, service). Thread-safe.

    Holds at most ``size`` keys; the oldest is dropped first. Never logs or shows a key.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._keys: dict[tuple[str, str, str, str], bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SigningKeyCache(entries={len(self._keys)})"

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, secret_key: str, date: str, region: str, service: str) -> bytes:
        cache_key = (secret_key, date, region, service)
        key = self._keys.get(cache_key)
        if key is None:
            k_date = _hmac(f"AWS4{secret_key}".encode(), date)
            key = _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")
            with self._lock:
                if len(self._keys) >= self._size:
                    self._keys.pop(next(iter(self._keys)))
                self._keys[cache_key] = key
        return key


@lru_cache(maxsize=1024)
def host_header(host: str, port: int) -> str:
    """The ``host`` header botocore signs for ``https://HOST:PORT``: lowercase, no :443."""
    if not _HOST_RE.fullmatch(host):
        raise ValueError(f"invalid database host '{host}'")
    if not 0 < port < 65536:
        raise ValueError(f"invalid database port '{port}'")
    hostname = urlsplit(f"https://{host}:{port}/").hostname or ""
    if host.startswith("["):
        hostname = f"[{hostname}]"
    return hostname if port == 443 else f"{hostname}:{port}"


def _amz_date(at: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC (naive instants are taken as UTC), as botocore writes it."""
    if at.tzinfo is not None and at.utcoffset():
        at = at.astimezone(UTC)
    iso = at.isoformat()  # YYYY-MM-DDTHH:MM:SS[.ffffff][+00:00], fast in C
    return f"{iso[0:4]}{iso[5:7]}{iso[8:10]}T{iso[11:13]}{iso[14:16]}{iso[17:19]}Z"


@lru_cache(maxsize=4096)
def _quoted(value: str) -> str:
    """botocore's percent_encode: UTF-8, then every byte but ``-._~`` and alphanumerics."""
    return quote(value.encode("utf-8"), safe=_SAFE)


class _Scope:
    """Everything about a signature that is fixed per (credentials, date, region).

    Holds the signing key and the session token: never shown, never logged.
    """

    __slots__ = ("credential", "security", "scope", "mac")

    def __init__(self, credential: str, security: str, scope: str, key: bytes) -> None:
        self.credential = credential
        self.security = security
        self.scope = scope
        self.mac = hmac.new(key, digestmod=hashlib.sha256)  # keyed once, copied per token

    def __repr__(self) -> str:
        return "_Scope(...)"


@lru_cache(maxsize=1024)
def _checked(host: str, port: int, region: str) -> str:
    """The signed ``host`` header, after checking host, port and region once per triple."""
    if not _REGION_RE.fullmatch(region):
        raise ValueError(f"invalid region '{region}'")
    return host_header(host, port)


class RdsTokenSigner:
    """Signs RDS IAM auth tokens (``rds-db:connect`` presigned URLs without the scheme).

    Per (credentials, date, region) the quoted credential, the quoted session token and the
    derived signing key are computed once; per token there is one SHA-256 and one HMAC.
    """

    service = SERVICE

    def __init__(self, key_cache: SigningKeyCache | None = None, *, max_scopes: int = 256) -> None:
        self._keys = key_cache if key_cache is not None else SigningKeyCache()
        self._scopes: dict[tuple[SigningCredentials, str, str], _Scope] = {}
        self._max_scopes = max_scopes
        self._lock = threading.Lock()
        self._last_date: tuple[datetime | None, str] = (None, "")

    def __repr__(self) -> str:
        return f"RdsTokenSigner({self._keys!r}, scopes={len(self._scopes)})"

    def _scope(self, credentials: SigningCredentials, date: str, region: str) -> _Scope:
        cache_key = (credentials, date, region)
        scope = self._scopes.get(cache_key)
        if scope is None:
            token = credentials.token
            scope = _Scope(
                credential=f"{_quoted(credentials.access_key)}%2F{date}%2F{region}%2F{self.service}%2Faws4_request",
                security="" if token is None else f"&X-Amz-Security-Token={_quoted(token)}",
                scope=f"{date}/{region}/{self.service}/aws4_request",
                key=self._keys.get(credentials.secret_key, date, region, self.service),
            )
            with self._lock:
                if len(self._scopes) >= self._max_scopes:
                    self._scopes.pop(next(iter(self._scopes)), None)
                self._scopes[cache_key] = scope
        return scope

    def sign(
        self,
        credentials: SigningCredentials,
        *,
        host: str,
        port: int,
        db_user: str,
        region: str,
        at: datetime,
    ) -> str:
        """The token for ``db_user`` at ``host:port``, signed at ``at`` (to the second, UTC)."""
        signed_host = _checked(host, port, region)
        if not db_user:
            raise ValueError("empty db user")
        return self._presign(credentials, f"{host}:{port}", signed_host, f"Action=connect&DBUser={_quoted(db_user)}",
                             region, at, EXPIRES_SECONDS)

    def _presign(self, credentials: SigningCredentials, netloc: str, signed_host: str, params: str, region: str,
                 at: datetime, expires: int) -> str:
        """``NETLOC/?PARAMS&X-Amz-...`` presigned as botocore does (``params`` sorted, quoted)."""
        last_at, amz_date = self._last_date
        if at != last_at:
            amz_date = _amz_date(at)
            self._last_date = (at, amz_date)
        scope = self._scope(credentials, amz_date[:8], region)
        query = (
            f"{params}&X-Amz-Algorithm={_ALGORITHM}"
            f"&X-Amz-Credential={scope.credential}&X-Amz-Date={amz_date}&X-Amz-Expires={expires}"
        )
        # the canonical query is sorted: Security-Token before SignedHeaders; the URL keeps
        # botocore's order, with the token last
        canonical_request = (
            f"GET\n/\n{query}{scope.security}&X-Amz-SignedHeaders=host\nhost:{signed_host}\n\nhost\n{_EMPTY_SHA256}"
        )
        string_to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{scope.scope}\n"
            f"{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
        )
        mac = scope.mac.copy()
        mac.update(string_to_sign.encode("utf-8"))
        signature = mac.hexdigest()
        return f"{netloc}/?{query}&X-Amz-SignedHeaders=host{scope.security}&X-Amz-Signature={signature}"


class DsqlTokenSigner(RdsTokenSigner):
    """Signs Aurora DSQL auth tokens (``dsql:DbConnect`` / ``dsql:DbConnectAdmin``): the bytes of
    botocore's ``generate_db_connect_auth_token`` / ``generate_db_connect_admin_auth_token``.

    A DSQL token is bound to the cluster's host name (no port: DSQL listens on 5432 behind 443's
    signing convention) and carries only ``Action``; the role it logs in as is not in it.
    """

    service = DSQL_SERVICE

    def sign_dsql(self, credentials: SigningCredentials, *, host: str, action: str, region: str, at: datetime,
                  expires: int = EXPIRES_SECONDS) -> str:
        """The token for ``action`` on the cluster at ``host``, valid ``expires`` seconds from ``at``."""
        if action not in DSQL_ACTIONS:
            raise ValueError(f"invalid DSQL action '{action}' (expected DbConnect or DbConnectAdmin)")
        if not 1 <= expires <= DSQL_MAX_EXPIRES:
            raise ValueError(f"invalid expiry '{expires}' (expected 1-{DSQL_MAX_EXPIRES} seconds)")
        if host.startswith("["):
            raise ValueError(f"invalid database host '{host}'")
        signed_host = _checked(host, 443, region)
        return self._presign(credentials, host, signed_host, f"Action={action}", region, at, expires)
