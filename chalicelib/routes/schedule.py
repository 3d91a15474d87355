"""The scheduled function ``canary``: every 5 minutes, EventBridge runs the
connectivity canary over every (database, db user) of the access policy.

Wiring only; the work is in :mod:`chalicelib.canary.scheduled`.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib.canary.scheduled import run_scheduled
from chalicelib.observability import invocation

__all__ = ["schedule_routes", "canary"]

schedule_routes = Blueprint(__name__)


@schedule_routes.schedule(Rate(5, unit=Rate.MINUTES), name="canary")
def canary(event: Any) -> dict[str, Any]:
    # Lambda enters through this module, not app.py: no middleware runs around this function.
    event_id = getattr(event, "event_id", None)
    with invocation(event_id or getattr(getattr(event, "context", None), "aws_request_id", None)):
        return run_scheduled(event_id=event_id)
