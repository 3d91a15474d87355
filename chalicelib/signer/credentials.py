"""Signing credentials as a frozen value, and the port they come through.

:class:`SigningCredentials` never shows its secret parts in ``repr``; ``expiry`` is the
instant the credentials stop working (``None``: long-term keys that do not expire). The
botocore-backed provider is an adapter: :mod:`chalicelib.aws.credentials` (re-exported here).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "SigningCredentials",
    "CredentialsProvider",
    "StaticCredentialsProvider",
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


_MOVED = {"BotocoreCredentialsProvider", "credentials_from_botocore"}


def __getattr__(name: str) -> Any:
    """The botocore-backed provider moved to :mod:`chalicelib.aws.credentials`; the old names
    keep working, resolved on first use (importing it here would be an import cycle)."""
    if name in _MOVED:
        from chalicelib.aws import credentials

        return getattr(credentials, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
