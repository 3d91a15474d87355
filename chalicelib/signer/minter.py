"""The token minter: (caller, database, db user, endpoint) in, an honest token out.

``expires_at = min(signed_at + 900 s, signing credentials' expiry) - 30 s``. Tokens are
cached per (caller principal, database, db user, endpoint); a cached token with less than
5 minutes left is never handed out: a new one is signed.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.signer.botocore_credentials import BotocoreCredentialsProvider
from chalicelib.signer.credentials import CredentialsProvider, SigningCredentials
from chalicelib.signer.roles import (
    RoleCredentialsCache,
    RoleRequest,
    StsRoleAssumer,
    dsql_role_request,
    role_request,
)
from chalicelib.signer.sigv4 import EXPIRES_SECONDS, DsqlTokenSigner, RdsTokenSigner

__all__ = ["MintedToken", "TokenMinter", "TokenCache", "TOKEN_LIFETIME", "EXPIRY_MARGIN", "MIN_HANDOUT_TTL"]

#: How long RDS accepts a token after it was signed (X-Amz-Expires).
TOKEN_LIFETIME = timedelta(seconds=EXPIRES_SECONDS)
#: Safety margin taken off the honest expiry.
EXPIRY_MARGIN = timedelta(seconds=30)
#: A cached token with less than this left is never handed out.
MIN_HANDOUT_TTL = timedelta(minutes=5)


@dataclass(frozen=True)
class MintedToken:
    """A signed token and when it stops working. ``repr`` never shows the token."""

    token: str = field(repr=False)
    signed_at: datetime
    expires_at: datetime

    def ttl_at(self, now: datetime) -> int:
        """Whole seconds left at ``now`` (never negative)."""
        return max(0, int((self.expires_at - now).total_seconds()))

    @property
    def ttl_seconds(self) -> int:
        """Whole seconds left now, by the system clock."""
        return self.ttl_at(SYSTEM_CLOCK.now())


def honest_expiry(signed_at: datetime, credentials: SigningCredentials,
                  lifetime: timedelta = TOKEN_LIFETIME) -> datetime:
    """``min(signed_at + lifetime (900 s), credentials' expiry) - 30 s``."""
    end = signed_at + lifetime
    if credentials.expiry is not None and credentials.expiry < end:
        end = credentials.expiry
    return end - EXPIRY_MARGIN


class TokenCache:
    """Minted tokens per key; :meth:`get` returns only tokens with >= 5 minutes left."""

    def __init__(self, *, clock: Clock, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._tokens: dict[tuple[Any, ...], MintedToken] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenCache(entries={len(self._tokens)})"

    def __len__(self) -> int:
        return len(self._tokens)

    def get(self, key: tuple[Any, ...]) -> MintedToken | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        if token.expires_at - self._clock.now() < MIN_HANDOUT_TTL:
            with self._lock:
                if self._tokens.get(key) is token:
                    del self._tokens[key]
            return None
        return token

    def put(self, key: tuple[Any, ...], token: MintedToken) -> None:
        with self._lock:
            if key not in self._tokens and len(self._tokens) >= self._max_entries:
                self._evict()
            self._tokens[key] = token

    def _evict(self) -> None:
        now = self._clock.now()
        stale = [k for k, t in self._tokens.items() if t.expires_at - now < MIN_HANDOUT_TTL]
        for key in stale:
            del self._tokens[key]
        while len(self._tokens) >= self._max_entries:
            del self._tokens[next(iter(self._tokens))]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


class TokenMinter:
    """Signs RDS IAM auth tokens with rdsvend's own SigV4 signer.

    - ``credentials``: the function's own credentials (default: botocore's chain from
      ``session``, created lazily, never at import);
    - ``assume_role``: how signer roles are assumed (default :class:`StsRoleAssumer`);
    - ``cache_tokens``: keep minted tokens per (caller, database, db user, endpoint).
    """

    def __init__(
        self,
        *,
        session: Any = None,
        clock: Clock = SYSTEM_CLOCK,
        credentials: CredentialsProvider | None = None,
        assume_role: Callable[[RoleRequest], SigningCredentials] | None = None,
        signer: RdsTokenSigner | None = None,
        cache_tokens: bool = True,
    ) -> None:
        self._clock = clock
        if credentials is None:
            credentials = BotocoreCredentialsProvider(session)
        self._credentials = credentials
        self._roles = RoleCredentialsCache(assume_role or StsRoleAssumer(), clock=clock)
        self._signer = signer or RdsTokenSigner()
        self._dsql_signer = DsqlTokenSigner()
        self._tokens = TokenCache(clock=clock) if cache_tokens else None

    def __repr__(self) -> str:
        return f"TokenMinter(tokens={self._tokens!r}, roles={self._roles!r})"

    def signing_credentials(
        self, identity: Any, database: Any, db_user: str, resource_id: str | None = None
    ) -> SigningCredentials:
        """The credentials a token for this request is signed with."""
        if database.signer_role:
            if getattr(database, "is_dsql", False):
                return self._roles.get(dsql_role_request(identity, database, db_user))
            return self._roles.get(role_request(identity, database, db_user, resource_id))
        return self._credentials.credentials()

    def mint(
        self,
        identity: Any,
        database: Any,
        db_user: str,
        host: str,
        port: int,
        *,
        resource_id: str | None = None,
        ttl_seconds: int | None = None,
    ) -> MintedToken:
        """A token for ``db_user`` at ``host:port``: a cached one with >= 5 min left, or a new one.

        Raises :class:`~chalicelib.errors.UpstreamUnavailableError` when credentials cannot
        be had (STS failure, throttling, timeout), ``ValueError`` for a malformed endpoint.

        An Aurora DSQL database (``database.is_dsql``) gets a DSQL token (``DbConnectAdmin`` for
        ``admin``, ``DbConnect`` otherwise) signed for ``ttl_seconds`` (default 900).
        """
        if getattr(database, "is_dsql", False):
            return self._mint_dsql(identity, database, db_user, host, ttl_seconds or EXPIRES_SECONDS)
        key = (identity.principal, database.name, db_user, host, port, database.region,
               database.signer_role, resource_id)
        if self._tokens is not None:
            cached = self._tokens.get(key)
            if cached is not None:
                return cached
        credentials = self.signing_credentials(identity, database, db_user, resource_id)
        signed_at = self._clock.now().replace(microsecond=0)
        token = self._signer.sign(
            credentials, host=host, port=port, db_user=db_user, region=database.region, at=signed_at
        )
        minted = MintedToken(token=token, signed_at=signed_at, expires_at=honest_expiry(signed_at, credentials))
        if self._tokens is not None:
            self._tokens.put(key, minted)
        return minted

    def _mint_dsql(self, identity: Any, database: Any, db_user: str, host: str, ttl_seconds: int) -> MintedToken:
        action = database.dsql_action(db_user)
        key = ("dsql", identity.principal, database.name, action, host, database.region, database.signer_role,
               ttl_seconds)
        if self._tokens is not None:
            cached = self._tokens.get(key)
            if cached is not None:
                return cached
        credentials = self.signing_credentials(identity, database, db_user)
        signed_at = self._clock.now().replace(microsecond=0)
        token = self._dsql_signer.sign_dsql(credentials, host=host, action=action, region=database.region,
                                            at=signed_at, expires=ttl_seconds)
        expires_at = honest_expiry(signed_at, credentials, timedelta(seconds=ttl_seconds))
        minted = MintedToken(token=token, signed_at=signed_at, expires_at=expires_at)
        if self._tokens is not None:
            self._tokens.put(key, minted)
        return minted
