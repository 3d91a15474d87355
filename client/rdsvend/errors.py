"""The client's exceptions. They stand alone: the client never imports the service."""
from __future__ import annotations

__all__ = ["RdsvendClientError", "VendError", "IdentityProofError", "RETRYABLE_STATUSES"]

#: Statuses after which a client should back off and retry (with ``Retry-After``).
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class RdsvendClientError(Exception):
    """Base class of every exception the rdsvend client raises."""


class VendError(RdsvendClientError):
    """The rdsvend service refused or failed a client's request, or could not be reached.

    ``code`` is the service's error code (``forbidden``, ``rate_limited`` ...) or, for
    failures before an answer, ``unreachable`` / ``no_credentials`` / ``bad_answer``.
    ``status`` is the HTTP status (``None`` without an answer). ``retry_after`` is in seconds.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES or self.code == "unreachable"


class IdentityProofError(RdsvendClientError):
    """The identity proof for a direct invoke could not be built (no credentials, bad input)."""
