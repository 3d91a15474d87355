"""The scheduled function ``canary``: every 5 minutes, EventBridge runs the
connectivity canary over every (database, db user) of the access policy, after the grant sweep
(expired grants written down, sessions of db users with no live grant left ended and reported).

Wiring only; the work is in :mod:`chalicelib.canary.scheduled`.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib.canary.scheduled import run_scheduled
from chalicelib.errors import RdsvendError
from chalicelib.observability import invocation, logger
from chalicelib.routes.wiring import sweep_grants

__all__ = ["schedule_routes", "canary"]

schedule_routes = Blueprint(__name__)


@schedule_routes.schedule(Rate(5, unit=Rate.MINUTES), name="canary")
def canary(event: Any) -> dict[str, Any]:
    # Lambda enters through this module, not app.py: no middleware runs around this function.
    event_id = getattr(event, "event_id", None)
    with invocation(event_id or getattr(getattr(event, "context", None), "aws_request_id", None)):
        try:
            grants = sweep_grants(event_id or "canary")
        except RdsvendError as exc:  # the grants table failed: said loudly; the canary still runs
            logger.error("grant sweep could not run", extra={"event": "grant_sweep_failed", "detail": str(exc)})
            grants = {"problems": [str(exc)]}
        answer = run_scheduled(event_id=event_id)
        return {**answer, "grants": grants} if grants is not None else answer
