"""API Gateway-shaped events for the functional tests (tests/events/*.json), and the token request."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.support.policies import ACCT

__all__ = ["EVENTS", "load_event", "token_event"]

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())  # each file holds one object
    return copy.deepcopy(event)


def token_event(body: Any = None, arn: str = f"arn:aws:sts::{ACCT}:assumed-role/orders-api-blue/i-1",
                org: str | None = "o-abc123def4", ip: str | None = "10.1.2.3", raw: str | None = None,
                ) -> dict[str, Any]:
    """A POST /v1/tokens event from ``arn`` (``org`` or ``ip`` None: API Gateway gave none)."""
    ev = load_event("post_tokens")
    ident = ev["requestContext"]["identity"]
    ident.update(userArn=arn, accountId=arn.split(":")[4], principalOrgId=org, sourceIp=ip)
    ev["body"] = raw if raw is not None else json.dumps(body or {"database": "orders-prod", "db_user": "orders_app"})
    return ev
