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


#: The longest modules measured (several local stacks each, the package and wheel builds, the
#: README's shell blocks): handed out first, so that no worker is left with one at the end.
_LONGEST = ("tests/e2e/test_local_restart.py", "tests/functional/test_deploy_package.py",
            "tests/e2e/test_readme_local.py", "tests/functional/test_client_wheel.py", "tests/e2e/test_local_org.py",
            "tests/e2e/test_local_stack.py", "tests/e2e/test_canary_faults.py")


def _heaviness(item: pytest.Item) -> tuple[int, int]:
    """The longest modules by name, then builds, then modules that start servers, then the rest."""
    path = item.nodeid.split("::", 1)[0]
    if path in _LONGEST:
        return 0, _LONGEST.index(path)
    if item.get_closest_marker("build") or item.get_closest_marker("wheel"):
        return 1, 0
    return (2, 0) if item.get_closest_marker("e2e") else (3, 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first, then those that build packages or start servers (the order
    is kept within each group): spread over workers (``make test``: ``--dist loadfile
    --no-loadscope-reorder`` hands modules out in this order), the long ones start early
    instead of leaving one worker busy at the end while the other waits."""
    items.sort(key=_heaviness)
