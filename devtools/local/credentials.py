"""The access keys the local AWS knows (:class:`Credential`) and where a verifier finds the
secret behind one (:class:`SecretLookup`: moto's backends for the stack, a fixed set in tests)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Credential", "SecretLookup", "StaticSecretLookup"]


@dataclass(frozen=True)
class Credential:
    """An access key the local AWS knows, with what it signs for.

    ``session_token`` is set for STS session credentials and ``None`` for long-term keys.
    The secret and the session token never appear in ``repr``.
    """

    access_key_id: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(repr=False)
    principal_arn: str
    account: str


class SecretLookup(Protocol):
    """Where the verifier finds the secret behind an access key id."""

    def secret_for(self, access_key_id: str) -> Credential | None:
        """The credential for ``access_key_id``, or ``None`` when no such key exists."""


class StaticSecretLookup:
    """An in-memory :class:`SecretLookup` over a fixed set of credentials."""

    def __init__(self, credentials: Iterable[Credential] = ()) -> None:
        self._by_key: dict[str, Credential] = {}
        for credential in credentials:
            self.add(credential)

    def add(self, credential: Credential) -> None:
        self._by_key[credential.access_key_id] = credential

    def remove(self, access_key_id: str) -> None:
        self._by_key.pop(access_key_id, None)

    def secret_for(self, access_key_id: str) -> Credential | None:
        return self._by_key.get(access_key_id)
