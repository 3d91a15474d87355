"""Functional fixtures: the Chalice app fed API Gateway-shaped events, moto for AWS."""
from __future__ import annotations

import pytest

from tests.support.events import load_event


@pytest.fixture
def event():
    return load_event
