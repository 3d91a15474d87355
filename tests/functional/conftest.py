"""Functional fixtures: the Chalice app fed API Gateway-shaped events, moto for AWS."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.events import load_event


@pytest.fixture
def event() -> Callable[[str], dict[str, Any]]:
    return load_event


@pytest.fixture
def fresh_client_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI uses the process-wide client factory: keep moto-bound clients out of it."""
    monkeypatch.setattr("chalicelib.aws.clients._default", None)
