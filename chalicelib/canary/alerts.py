"""Alert once per status change: last statuses in DynamoDB, messages to SNS.

The state table (``RDSVEND_STATE_TABLE``) has one item per target, partition key ``target``
(string, ``"DATABASE/DB_USER"``), with ``status``, ``changed_at`` and ``problems`` (the ids
of the checks that did not pass). For each target of a report:

- same status as recorded: nothing is sent or written;
- a target seen for the first time and healthy (pass/warn): recorded silently;
- otherwise (a change, or a first sighting that is failing): one SNS message to
  ``RDSVEND_ALERT_TOPIC``, *then* a conditional write (only if the recorded status is still
  the one we read). A failed publish leaves the state alone, so the next run tries again
  (at least once, never lost); a lost write race means another run already alerted.

A canary that cannot do its job (no policy, an unreadable state table, a topic that refuses
messages) sends a ``canary_run_failed`` alert (:func:`failure_message`) when the topic still
works, and its invocation fails: see :mod:`chalicelib.canary.scheduled`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chalicelib.aws.probe import probe
from chalicelib.canary.model import Report, TargetReport
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import ProbeError

__all__ = ["StatusChange", "StateStore", "Notifier", "MemoryStateStore", "MemoryNotifier",
           "DynamoStateStore", "SnsNotifier", "alert_changes", "change_message", "failure_message"]


@dataclass(frozen=True)
class StatusChange:
    target: str
    database: str
    db_user: str
    previous: str | None
    status: str


class StateStore(Protocol):
    def previous(self, keys: Sequence[str]) -> dict[str, str]:
        """Recorded statuses of these targets (absent keys: never seen)."""

    def record(self, key: str, status: str, *, expected: str | None, at: datetime,
               problems: Sequence[str]) -> bool:
        """Write ``status`` if the recorded one is still ``expected``; False if it was not."""


class Notifier(Protocol):
    def publish(self, subject: str, message: str, attributes: Mapping[str, str]) -> None: ...


class MemoryStateStore:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def previous(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: self.items[k]["status"] for k in keys if k in self.items}

    def record(self, key: str, status: str, *, expected: str | None, at: datetime,
               problems: Sequence[str]) -> bool:
        current = self.items.get(key, {}).get("status")
        if current != expected:
            return False
        self.items[key] = {"status": status, "changed_at": at.isoformat(), "problems": list(problems)}
        return True


class MemoryNotifier:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    def publish(self, subject: str, message: str, attributes: Mapping[str, str]) -> None:
        if self.fail:
            raise ProbeError("sns Publish failed: InternalError", service="sns")
        self.sent.append({"subject": subject, "message": json.loads(message), "attributes": dict(attributes)})


class DynamoStateStore:
    def __init__(self, table: str, client: Any) -> None:
        self.table = table
        self._client = client

    def previous(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {self.table: {
                "Keys": [{"target": {"S": k}} for k in unique[start:start + 100]],
                "ProjectionExpression": "#t, #s", "ExpressionAttributeNames": {"#t": "target", "#s": "status"},
                "ConsistentRead": True}}
            for _ in range(5):
                with probe("dynamodb", "BatchGetItem"):
                    answer = self._client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    found[item["target"]["S"]] = item["status"]["S"]
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise ProbeError("dynamodb BatchGetItem left keys unprocessed", service="dynamodb")
        return found

    def record(self, key: str, status: str, *, expected: str | None, at: datetime,
               problems: Sequence[str]) -> bool:

        item = {"target": {"S": key}, "status": {"S": status}, "changed_at": {"S": at.isoformat()},
                "problems": {"L": [{"S": p} for p in problems]}}
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": item}
        if expected is None:
            kwargs["ConditionExpression"] = "attribute_not_exists(#t)"
            kwargs["ExpressionAttributeNames"] = {"#t": "target"}
        else:
            kwargs["ConditionExpression"] = "#s = :expected"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            kwargs["ExpressionAttributeValues"] = {":expected": {"S": expected}}
        try:
            with probe("dynamodb", "PutItem"):
                self._client.put_item(**kwargs)
        except ProbeError as exc:
            if exc.code == "ConditionalCheckFailedException":
                return False
            raise
        return True


class SnsNotifier:
    def __init__(self, topic_arn: str, client: Any) -> None:
        self.topic_arn = topic_arn
        self._client = client

    def publish(self, subject: str, message: str, attributes: Mapping[str, str]) -> None:
        with probe("sns", "Publish"):
            self._client.publish(
                TopicArn=self.topic_arn, Subject=subject[:100], Message=message,
                MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
            )


def change_message(target: TargetReport, previous: str | None, at: datetime) -> tuple[str, str, dict[str, str]]:
    """Subject, JSON body and message attributes of one status-change alert (no secrets:
    check messages name ARNs, roles and policies, never tokens)."""
    was = previous or "new"
    subject = f"rdsvend canary: {target.key} {was} -> {target.status}"
    body = {
        "event": "canary_status_change", "database": target.database, "db_user": target.db_user,
        "previous": previous, "status": target.status, "at": at.isoformat(),
        "problems": [{"id": c.id, "status": c.status, "message": c.message, "fix": c.fix}
                     for c in target.problems],
    }
    attributes = {"status": target.status, "database": target.database, "db_user": target.db_user}
    return subject, json.dumps(body, sort_keys=True), attributes


def failure_message(stage: str, message: str, at: datetime,
                    report: Report | None = None) -> tuple[str, str, dict[str, str]]:
    """Subject, JSON body and attributes of the alert saying the canary could not do its job;
    with the run's report (when there is one) its summary and the targets that did not pass."""
    body: dict[str, Any] = {"event": "canary_run_failed", "stage": stage, "message": message,
                            "at": at.isoformat()}
    if report is not None:
        body["summary"] = report.summary
        body["targets"] = [
            {"database": t.database, "db_user": t.db_user, "status": t.status,
             "problems": [{"id": c.id, "status": c.status, "message": c.message, "fix": c.fix} for c in t.problems]}
            for t in report.targets if t.status != "pass"
        ]
    subject = f"rdsvend canary: cannot run ({stage})"
    return subject, json.dumps(body, sort_keys=True), {"status": "error", "stage": stage}


def alert_changes(report: Report, store: StateStore, notifier: Notifier, *,
                  clock: Clock = SYSTEM_CLOCK, log: Any = None,
                  failures: list[str] | None = None) -> list[StatusChange]:
    """Publish one alert per target whose status changed; returns the changes alerted.

    A publish or state write that fails is logged, left for the next run, and described in
    ``failures`` (when given); reading the recorded statuses raises :class:`ProbeError`."""
    previous = store.previous([t.key for t in report.targets])
    at = clock.now()
    sent: list[StatusChange] = []
    for target in report.targets:
        before = previous.get(target.key)
        status = target.status
        if before == status:
            continue
        problems = [c.id for c in target.problems]
        if before is None and status in ("pass", "warn"):
            _record(store, target, before, at, problems, log)
            continue
        subject, body, attributes = change_message(target, before, at)
        try:
            notifier.publish(subject, body, attributes)
        except ProbeError as exc:
            if log is not None:
                log.error({"event": "canary_alert_failed", "target": target.key, "cause": exc.cause})
            if failures is not None:
                failures.append(f"alert for '{target.key}' not sent: {exc.cause}")
            continue  # state untouched: the next run alerts again
        sent.append(StatusChange(target.key, target.database, target.db_user, before, status))
        _record(store, target, before, at, problems, log, failures)  # a lost race: another run alerted too
    return sent


def _record(store: StateStore, target: TargetReport, before: str | None, at: datetime,
            problems: list[str], log: Any, failures: list[str] | None = None) -> bool:
    try:
        return store.record(target.key, target.status, expected=before, at=at, problems=problems)
    except ProbeError as exc:
        if log is not None:
            log.error({"event": "canary_state_write_failed", "target": target.key, "cause": exc.cause})
        if failures is not None:
            failures.append(f"status of '{target.key}' not recorded: {exc.cause}")
        return False
