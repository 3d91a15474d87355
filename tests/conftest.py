"""Shared test set-up: no test ever reaches a real AWS account."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devtools.local.botocore_models import share_loaded_models
from tests.support.examples import register_profiles

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
# botocore's models parsed once per test process, not once per session (moto makes one per test).
share_loaded_models()
# hypothesis: the quick profile unless HYPOTHESIS_PROFILE or --hypothesis-profile says thorough.
register_profiles()


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


def _heaviness(item: pytest.Item) -> int:
    """0: builds (one long module each), 1: starts servers, 2: the rest."""
    if item.get_closest_marker("build") or item.get_closest_marker("wheel"):
        return 0
    return 1 if item.get_closest_marker("e2e") else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules that build packages, then those that start servers, run first (keeping the
    order within each group): with the tests spread over workers (``make test``), the long
    modules then start early instead of leaving one worker busy at the end while the other waits."""
    items.sort(key=_heaviness)
