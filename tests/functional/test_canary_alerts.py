"""Alerts once per status change (moto SNS -> SQS, DynamoDB state), EMF metrics, log lines,
and the scheduled function end to end with moto and in-memory databases."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.canary.alerts import (
    DynamoStateStore,
    MemoryNotifier,
    MemoryStateStore,
    SnsNotifier,
    alert_changes,
)
from chalicelib.canary.emit import emit_metrics, log_report
from chalicelib.canary.model import CheckResult, Report, Status, TargetReport
from chalicelib.clock import FrozenClock
from tests.support.aws import make_alert_sink

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TABLE = "rdsvend-canary-state"


def report(**statuses: Status) -> Report:
    targets = []
    for key, status in statuses.items():
        db, user = key.split("__")
        checks = [CheckResult("rds.found", "pass", "available")]
        if status != "pass":
            checks.append(CheckResult("org.scp_allows", status, "SCP p-123 denies rds-db:connect", "detach p-123"))
        targets.append(TargetReport(db, user, tuple(checks)))
    return Report(AT, AT, tuple(targets))


@pytest.fixture
def aws(aws_env: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        yield {"session": session, **make_alert_sink(session, TABLE)}


def received(aws: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    while True:
        got = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        for message in got:
            out.append(json.loads(message["Body"]))
            aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"])


def test_one_sns_message_per_status_change_through_dynamodb_state(aws: dict[str, Any]) -> None:
    store = DynamoStateStore(TABLE, aws["ddb"])
    notifier = SnsNotifier(aws["topic"], aws["sns"])
    clock = FrozenClock(AT)

    # first sighting: healthy targets are recorded silently, a failing one alerts
    sent = alert_changes(report(orders__app="pass", orders__owner="fail"), store, notifier, clock=clock)
    assert [(c.target, c.previous, c.status) for c in sent] == [("orders/owner", None, "fail")]
    first = received(aws)
    assert len(first) == 1 and first[0]["status"] == "fail" and first[0]["problems"][0]["id"] == "org.scp_allows"

    # nothing changed: nothing sent, however often the canary runs
    for _ in range(3):
        assert alert_changes(report(orders__app="pass", orders__owner="fail"), store, notifier, clock=clock) == []
    assert received(aws) == []

    # app breaks, owner recovers: exactly two messages
    sent = alert_changes(report(orders__app="error", orders__owner="pass"), store, notifier, clock=clock)
    assert sorted((c.target, c.previous, c.status) for c in sent) == [("orders/app", "pass", "error"),
                                                                     ("orders/owner", "fail", "pass")]
    assert sorted((m["database"] + "/" + m["db_user"], m["previous"], m["status"]) for m in received(aws)) == [
        ("orders/app", "pass", "error"), ("orders/owner", "fail", "pass")]
    item = aws["ddb"].get_item(TableName=TABLE, Key={"target": {"S": "orders/app"}})["Item"]
    assert item["status"]["S"] == "error" and item["problems"]["L"] == [{"S": "org.scp_allows"}]


def test_a_failed_publish_leaves_state_alone_so_the_next_run_alerts(aws: dict[str, Any]) -> None:
    store = MemoryStateStore()
    assert alert_changes(report(orders__app="fail"), store, MemoryNotifier(fail=True)) == []
    assert store.items == {}
    notifier = MemoryNotifier()
    assert len(alert_changes(report(orders__app="fail"), store, notifier)) == 1
    assert notifier.sent[0]["subject"] == "rdsvend canary: orders/app new -> fail"


def test_state_write_race_is_lost_gracefully(aws: dict[str, Any]) -> None:
    store = DynamoStateStore(TABLE, aws["ddb"])
    assert store.record("a/b", "fail", expected=None, at=AT, problems=[]) is True
    assert store.record("a/b", "pass", expected=None, at=AT, problems=[]) is False  # someone wrote first
    assert store.record("a/b", "pass", expected="warn", at=AT, problems=[]) is False
    assert store.record("a/b", "pass", expected="fail", at=AT, problems=[]) is True
    assert store.previous(["a/b", "c/d"]) == {"a/b": "pass"}


def test_emf_metrics_per_target(capsys: pytest.CaptureFixture[str]) -> None:
    r = Report(AT, AT, (
        TargetReport("orders", "app", (CheckResult("rds.found", "pass", "ok"),
                                       CheckResult("db.connect", "pass", "ok", "", {"latency_ms": 12.5}))),
        TargetReport("orders", "owner", (CheckResult("rds.found", "fail", "gone", "fix"),
                                         CheckResult("db.connect", "skip", "not attempted"))),
    ))
    assert emit_metrics(r, namespace="rdsvend", service="rdsvend") == 2
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(docs) == 2
    app, owner = docs
    assert app["database"] == "orders" and app["db_user"] == "app"

    def value(doc: dict[str, Any], name: str) -> Any:
        return doc[name][0] if isinstance(doc[name], list) else doc[name]

    assert value(app, "CanaryCheckFailed") == 0.0 and value(app, "ConnectLatency") == 12.5
    emf = app["_aws"]["CloudWatchMetrics"][0]
    assert {m["Name"]: m["Unit"] for m in emf["Metrics"]} == {"CanaryCheckFailed": "Count",
                                                             "ConnectLatency": "Milliseconds"}
    assert emf["Namespace"] == "rdsvend"
    assert any(set(d) >= {"database", "db_user"} for d in emf["Dimensions"])
    assert value(owner, "CanaryCheckFailed") == 1.0 and "ConnectLatency" not in owner


class ListLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, msg: dict[str, Any]) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: dict[str, Any]) -> None:
        self.lines.append(("warning", msg))

    def error(self, msg: dict[str, Any]) -> None:
        self.lines.append(("error", msg))


def test_one_log_line_for_the_report_and_one_per_non_passing_check() -> None:
    log = ListLog()
    log_report(report(orders__app="pass", orders__owner="fail", other__x="warn"), log)
    events = [(level, m["event"], m.get("check")) for level, m in log.lines]
    assert events == [("info", "canary_report", None), ("error", "canary_check", "org.scp_allows"),
                      ("warning", "canary_check", "org.scp_allows")]
    assert log.lines[0][1]["summary"] == {"targets": 3, "pass": 1, "warn": 1, "fail": 1, "error": 0}
