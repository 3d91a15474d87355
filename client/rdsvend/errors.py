"""The client's exceptions. They stand alone: the client never imports the service."""
from __future__ import annotations

import importlib

__all__ = ["RdsvendClientError", "VendError", "IdentityProofError", "MissingExtraError", "require_extra",
           "RETRYABLE_STATUSES"]

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


class MissingExtraError(RdsvendClientError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra that installs it (``pip install 'rdsvend[psycopg]'``)."""

    def __init__(self, feature: str, module: str, extra: str) -> None:
        super().__init__(f"{feature} needs {module}, which is not installed: pip install 'rdsvend[{extra}]'")
        self.extra = extra


def require_extra(feature: str, module: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` when ``module`` cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(feature, module, extra) from None
