"""The token minter: credentials in, a short-lived RDS IAM auth token out."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import UpstreamUnavailableError

__all__ = ["MintedToken", "TokenMinter", "TOKEN_LIFETIME", "EXPIRY_MARGIN"]

#: How long RDS accepts a token after it was signed (X-Amz-Expires).
TOKEN_LIFETIME = timedelta(seconds=900)
#: Safety margin taken off the honest expiry.
EXPIRY_MARGIN = timedelta(seconds=30)


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


class TokenMinter:
    """Signs RDS IAM auth tokens with the function's own credentials.

    The botocore session is created lazily on first use, never at import.
    """

    def __init__(self, *, session: Any = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def _client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                if self._session is None:
                    import botocore.session

                    self._session = botocore.session.get_session()
                client = self._session.create_client("rds", region_name=region)
                self._clients[region] = client
            return client

    def mint(
        self,
        identity: Any,
        database: Any,
        db_user: str,
        host: str,
        port: int,
        *,
        resource_id: str | None = None,
    ) -> MintedToken:
        """Sign a token for ``db_user`` at ``host:port`` in the database's region."""
        from botocore.exceptions import BotoCoreError, ClientError

        signed_at = self._clock.now()
        try:
            token = self._client(database.region).generate_db_auth_token(
                DBHostname=host, Port=port, DBUsername=db_user, Region=database.region
            )
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamUnavailableError("sts", detail=type(exc).__name__) from None
        expires_at = signed_at + TOKEN_LIFETIME - EXPIRY_MARGIN
        return MintedToken(token=token, signed_at=signed_at, expires_at=expires_at)
