"""Shared test set-up: no test ever reaches a real AWS account."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Fake credentials before anything creates a boto3 client; moto intercepts the calls.
for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "rdsvend",
    "POWERTOOLS_METRICS_NAMESPACE": "rdsvend",
    "POWERTOOLS_TRACE_DISABLED": "true",
}.items():
    os.environ.setdefault(_key, _value)
for _key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_key, None)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Fake AWS credentials for a test using moto's decorators."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return monkeypatch


@pytest.fixture(autouse=True)
def _service_log_level() -> Iterator[None]:
    """An operator command run in-process (``rdsvend canary``/``doctor``) quiets the service's
    logger for its terminal; the next test gets the service's level back."""
    from chalicelib.observability import logger

    level = logger.log_level
    yield
    logger.setLevel(level)
