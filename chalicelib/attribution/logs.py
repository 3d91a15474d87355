"""Reading vends and refusals from CloudWatch Logs (``FilterLogEvents``, paginated, bounded).

Failures become :class:`~chalicelib.errors.ProbeError` (through the canary's one AWS error
edge); a log group that does not exist yet reads as empty (``missing`` says so).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.attribution.join import GrantEvent, Vend, grant_event_from_audit, vend_from_audit
from chalicelib.attribution.refusals import Refusal, log_group_for, parse_refusal
from chalicelib.aws.probe import probe
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database

__all__ = ["LogRead", "read_events", "read_refusals", "read_vends", "read_audit", "MAX_PAGES"]

MAX_PAGES = 50


@dataclass(frozen=True)
class LogRead:
    group: str
    events: tuple[tuple[float, str], ...]  # (epoch seconds, message)
    missing: bool = False  # the log group does not exist
    truncated: bool = False  # more than MAX_PAGES pages


def read_events(client: Any, group: str, since: float, until: float | None = None) -> LogRead:
    """Every event of ``group`` from ``since`` (epoch seconds) on, oldest first."""
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": int(since * 1000)}
    if until is not None:
        kwargs["endTime"] = int(until * 1000)
    events: list[tuple[float, str]] = []
    for _page in range(MAX_PAGES):
        try:
            with probe("logs", "FilterLogEvents"):
                answer = client.filter_log_events(**kwargs)
        except ProbeError as exc:
            if exc.code == "ResourceNotFoundException":
                return LogRead(group, (), missing=True)
            raise
        events.extend((int(e.get("timestamp", 0)) / 1000.0, str(e.get("message", "")))
                      for e in answer.get("events", []))
        token = answer.get("nextToken")
        if not token or token == kwargs.get("nextToken"):
            break
        kwargs["nextToken"] = token
    else:
        return LogRead(group, tuple(sorted(events)), truncated=True)
    return LogRead(group, tuple(sorted(events)))


def read_refusals(client: Any, database: Database, since: float,
                  until: float | None = None) -> tuple[list[Refusal], LogRead]:
    """The refused IAM logins ``database``'s ``iam-db-auth-error`` log holds since ``since``."""
    read = read_events(client, log_group_for(database.identifier, database.kind), since, until)
    refusals = [r for at, message in read.events
                if (r := parse_refusal(message, at=at, database=database.identifier)) is not None]
    return refusals, read


def read_vends(client: Any, group: str, since: float, until: float | None = None) -> tuple[list[Vend], LogRead]:
    """The vend decisions (audit lines) in ``group`` since ``since``."""
    vends, _grants, read = read_audit(client, group, since, until)
    return vends, read


def read_audit(client: Any, group: str, since: float,
               until: float | None = None) -> tuple[list[Vend], list[GrantEvent], LogRead]:
    """The vend decisions and the grant events (audit lines) in ``group`` since ``since``."""
    read = read_events(client, group, since, until)
    vends: list[Vend] = []
    grants: list[GrantEvent] = []
    for at, message in read.events:
        if '"event"' not in message:
            continue
        try:
            record = json.loads(message[message.index("{"):])
        except ValueError:
            continue
        vend = vend_from_audit(record, at)
        if vend is not None:
            vends.append(vend)
            continue
        grant = grant_event_from_audit(record, at)
        if grant is not None:
            grants.append(grant)
    return vends, grants, read
