"""Functional fixtures: the Chalice app fed API Gateway-shaped events, moto for AWS."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load_event(name: str) -> dict:
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


@pytest.fixture
def event():
    return load_event
