"""The function's own AWS credentials from botocore's default chain, as :class:`SigningCredentials`:
the signer's default credentials adapter (botocore is imported when a session is first needed)."""
from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from chalicelib.aws.errors import aws_error
from chalicelib.errors import UpstreamUnavailableError
from chalicelib.signer.credentials import SigningCredentials

__all__ = ["BotocoreCredentialsProvider", "credentials_from_botocore"]


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
        try:
            if self._botocore_credentials is None:
                found = self.session.get_credentials()
                if found is None:
                    raise UpstreamUnavailableError(
                        "credentials", detail="no AWS credentials found for the signer"
                    )
                self._botocore_credentials = found
            return credentials_from_botocore(self._botocore_credentials)
        except Exception as exc:
            if aws_error(exc) is None:
                raise
            raise UpstreamUnavailableError(
                "credentials", detail=f"could not load the signer's credentials: {type(exc).__name__}"
            ) from None
