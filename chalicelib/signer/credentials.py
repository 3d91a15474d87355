"""Signing credentials as a frozen value, and where they come from.

:class:`SigningCredentials` never shows its secret parts in ``repr``; ``expiry`` is the
instant the credentials stop working (``None``: long-term keys that do not expire).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.errors import UpstreamUnavailableError

__all__ = [
    "SigningCredentials",
    "CredentialsProvider",
    "StaticCredentialsProvider",
    "BotocoreCredentialsProvider",
    "credentials_from_botocore",
]


@dataclass(frozen=True)
class SigningCredentials:
    """AWS credentials to sign with. ``repr`` shows only the access key id and expiry."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    expiry: datetime | None = None  # tz-aware UTC; None: does not expire


class CredentialsProvider(Protocol):
    def credentials(self) -> SigningCredentials:
        """Credentials valid now (refreshed if they were about to expire)."""


class StaticCredentialsProvider:
    """Always the same credentials (tests, benchmarks)."""

    def __init__(self, credentials: SigningCredentials) -> None:
        self._credentials = credentials

    def credentials(self) -> SigningCredentials:
        return self._credentials


def _expiry_of(botocore_credentials: Any) -> datetime | None:
    """The expiry of botocore credentials: RefreshableCredentials keep it in ``_expiry_time``."""
    expiry = getattr(botocore_credentials, "_expiry_time", None)
    if not isinstance(expiry, datetime):
        return None
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return expiry.astimezone(UTC)


def credentials_from_botocore(botocore_credentials: Any) -> SigningCredentials:
    """Freeze botocore credentials (refreshing them if botocore thinks it is time)."""
    frozen = botocore_credentials.get_frozen_credentials()
    return SigningCredentials(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        token=frozen.token or None,
        expiry=_expiry_of(botocore_credentials),
    )


class BotocoreCredentialsProvider:
    """The function's own credentials from botocore's default chain.

    The botocore session is created on first use, never at import. botocore's
    RefreshableCredentials refresh themselves ahead of expiry; their expiry is reported.
    """

    def __init__(self, session: Any = None) -> None:
        self._session = session
        self._botocore_credentials: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                import botocore.session

                self._session = botocore.session.get_session()
            return self._session

    def credentials(self) -> SigningCredentials:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self._botocore_credentials is None:
                found = self.session.get_credentials()
                if found is None:
                    raise UpstreamUnavailableError(
                        "credentials", detail="no AWS credentials found for the signer"
                    )
                self._botocore_credentials = found
            return credentials_from_botocore(self._botocore_credentials)
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamUnavailableError(
                "credentials", detail=f"could not load the signer's credentials: {type(exc).__name__}"
            ) from None
