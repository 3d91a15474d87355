"""The canary's AWS edge: lazily created boto3 clients with short timeouts, and one place
that turns every botocore failure into a :class:`ProbeError` with a secret-free cause."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from chalicelib.errors import ProbeError

__all__ = ["AwsClients", "probe", "NOT_FOUND_CODES"]

#: Error codes that mean "it does not exist" rather than "the call failed".
NOT_FOUND_CODES = frozenset({
    "DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault", "DBClusterNotFound",
    "DBProxyNotFoundFault", "DBProxyNotFound", "NoSuchEntity",
})


@contextlib.contextmanager
def probe(service: str, operation: str) -> Iterator[None]:
    """Run one AWS call; any botocore failure becomes a :class:`ProbeError` naming the call.

    A ``ClientError`` whose code is in :data:`NOT_FOUND_CODES` is re-raised unchanged so the
    caller can tell "absent" from "could not ask".
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        code = str(error.get("Code") or "ClientError")
        if code in NOT_FOUND_CODES:
            raise
        message = str(error.get("Message") or "")[:200]
        cause = f"{service} {operation} failed: {code}" + (f" ({message})" if message else "")
        raise ProbeError(cause, service=service, code=code) from None
    except BotoCoreError as exc:
        # e.g. EndpointConnectionError, ConnectTimeoutError, NoCredentialsError: the class name
        # and botocore's fixed message template carry no secret.
        cause = f"{service} {operation} failed: {type(exc).__name__}: {exc}"[:300]
        raise ProbeError(cause, service=service, code=type(exc).__name__) from None


class AwsClients:
    """boto3 clients by (service, region), created on first use with the canary's timeouts.

    ``endpoint_url`` overrides every service's endpoint (the local stack, or a test that points
    the canary at a dead port); otherwise boto3's own ``AWS_ENDPOINT_URL`` handling applies.
    """

    def __init__(
        self,
        *,
        session: Any = None,
        endpoint_url: str | None = None,
        timeout_seconds: float = 5.0,
        default_region: str | None = None,
    ) -> None:
        self._session = session
        self._endpoint_url = endpoint_url
        self._timeout = max(1.0, float(timeout_seconds))
        self._default_region = default_region
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str | None], Any] = {}

    def client(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self._default_region)
        with self._lock:
            existing = self._clients.get(key)
            if existing is not None:
                return existing
            import boto3
            from botocore.config import Config

            if self._session is None:
                self._session = boto3.session.Session()
            config = Config(
                connect_timeout=self._timeout,
                read_timeout=self._timeout,
                retries={"max_attempts": 2, "mode": "standard"},
            )
            kwargs: dict[str, Any] = {"config": config}
            if key[1]:
                kwargs["region_name"] = key[1]
            elif self._session.region_name is None:
                kwargs["region_name"] = "us-east-1"
            if self._endpoint_url:
                kwargs["endpoint_url"] = self._endpoint_url
            client = self._session.client(service, **kwargs)
            self._clients[key] = client
            return client
