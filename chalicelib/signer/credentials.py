"""Signing credentials as a frozen value, and the port they come through.

:class:`SigningCredentials` never shows its secret parts in ``repr``; ``expiry`` is the
instant the credentials stop working (``None``: long-term keys that do not expire). The
botocore-backed provider is an adapter: :mod:`chalicelib.signer.botocore_credentials`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

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
