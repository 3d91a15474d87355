"""The AWS edge of the canary and the audit: the client factory with short timeouts, and one place that turns
every AWS failure into a :class:`ProbeError` with a secret-free cause."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.errors import NOT_FOUND_CODES, aws_error
from chalicelib.errors import ProbeError

__all__ = ["AwsClients", "probe", "NOT_FOUND_CODES"]

#: Services whose "no such thing" answers are handed back to the caller (a database or a role
#: that does not exist is an answer); for the others (the alert table, the topic) a missing
#: resource is a failure of the canary's own setup.
_ABSENCE_IS_AN_ANSWER = frozenset({"rds", "iam"})


@contextlib.contextmanager
def probe(service: str, operation: str) -> Iterator[None]:
    """Run one AWS call; any botocore failure becomes a :class:`ProbeError` naming the call.

    An RDS or IAM "not found" (:data:`chalicelib.aws.errors.NOT_FOUND_CODES`) is re-raised
    unchanged so the caller can tell "absent" from "could not ask".
    """
    try:
        yield
    except Exception as exc:
        error = aws_error(exc)
        if error is None:
            raise
        if error.not_found and service in _ABSENCE_IS_AN_ANSWER:
            raise
        if error.kind == "no_answer":
            # e.g. EndpointConnectionError, ConnectTimeoutError, NoCredentialsError: the class name
            # and botocore's fixed message template carry no secret.
            cause = f"{service} {operation} failed: {error.code}: {exc}"[:300]
        else:
            message = error.message[:200]
            cause = f"{service} {operation} failed: {error.code}" + (f" ({message})" if message else "")
        raise ProbeError(cause, service=service, code=error.code) from None


class AwsClients(ClientFactory):
    """boto3 clients by (service, region), created on first use with the canary's timeouts
    (``timeout_seconds`` to connect and to read, 2 attempts in all).

    ``endpoint_url`` overrides every service's endpoint (the local stack, or a test that points
    the canary at a dead port); otherwise boto3's own ``AWS_ENDPOINT_URL`` handling applies.
    A call that names no region uses ``default_region``, else the session's, else us-east-1.
    """

    def __init__(
        self,
        *,
        session: Any = None,
        endpoint_url: str | None = None,
        timeout_seconds: float = 5.0,
        default_region: str | None = None,
    ) -> None:
        timeout = max(1.0, float(timeout_seconds))
        config = {"connect_timeout": timeout, "read_timeout": timeout,
                  "retries": {"max_attempts": 2, "mode": "standard"}}
        super().__init__(session=session, config=config, endpoint_url=endpoint_url,
                         default_region=default_region, fallback_region="us-east-1")
