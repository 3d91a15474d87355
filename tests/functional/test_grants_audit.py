"""Every grant event is an audit line that ``rdsvend audit`` shows: request, approval, refusal,
revoke, expiry and each session ended (the service's real lines, through moto's CloudWatch Logs)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from chalicelib.clock import FrozenClock
from chalicelib.errors import ForbiddenError
from chalicelib.grants.service import GrantService
from chalicelib.grants.store import DynamoGrantStore, create_grants_table
from chalicelib.identity import identity_from_arn
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import Database
from chalicelib.policy_source import StaticPolicySource
from devtools.cli.audit_cmd import audit
from tests.support.grant_policies import APPROVER, GRANT_POLICY, REQUESTER, STRANGER

ASK = {"database": "orders-prod", "db_user": "orders_owner", "reason": "INC-9", "duration_seconds": 600}


class Sessions:
    def end_sessions(self, database: Database, db_user: str) -> list[str]:
        return ["4242"] if (database.name, db_user) == ("orders-prod", "orders_owner") else []


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          ) -> Iterator[tuple[list[str], dict[str, Any], dict[str, Any]]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_grants_table(client, "grants")
        clock = FrozenClock(datetime.now(UTC))
        service = GrantService(store=DynamoGrantStore(client, "grants"), clock=clock, sessions=Sessions(),
                               policy_source=StaticPolicySource(load_policy_text(GRANT_POLICY, "g.yaml")))
        capsys.readouterr()
        first = service.request(identity_from_arn(REQUESTER), ASK, "r1")
        service.act(identity_from_arn(APPROVER), first["id"], "approve", "r2")
        second = service.request(identity_from_arn(REQUESTER), ASK, "r3")
        service.act(identity_from_arn(APPROVER), second["id"], "deny", "r4")
        with pytest.raises(ForbiddenError):
            service.request(identity_from_arn(STRANGER), ASK, "r5")
        third = service.request(identity_from_arn(REQUESTER), ASK, "r6")
        service.act(identity_from_arn(APPROVER), third["id"], "approve", "r7")
        service.act(identity_from_arn(REQUESTER), third["id"], "revoke", "r8")  # first still lives: no session ends
        clock.advance(600)
        service.sweep("canary-1")  # first expires; nothing lives: its sessions end
        written = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        logs = boto3.client("logs", region_name="us-east-1")
        logs.create_log_group(logGroupName="/aws/lambda/rdsvend-test")
        logs.create_log_stream(logGroupName="/aws/lambda/rdsvend-test", logStreamName="s")
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName="/aws/lambda/rdsvend-test", logStreamName="s",
                            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(written)])
        yield written, first, third


def test_audit_shows_each_grant_event_and_the_ended_session(
    lines: tuple[list[str], dict[str, Any], dict[str, Any]],
    tmp_path: Path,
) -> None:
    written, first, third = lines
    events = [json.loads(line) for line in written]
    actions = [(e["event"], e.get("action")) for e in events if e.get("event") in ("grant", "session_ended")]
    assert actions == [("grant", "requested"), ("grant", "approved"), ("grant", "requested"), ("grant", "denied"),
                       ("grant", "refused"), ("grant", "requested"), ("grant", "approved"), ("grant", "revoked"),
                       ("grant", "expired"), ("session_ended", None)]
    policy = tmp_path / "g.yaml"
    policy.write_text(GRANT_POLICY)
    result = CliRunner().invoke(audit, ["--log-group", "/aws/lambda/rdsvend-test", "--policy", str(policy),
                                        "--since", "1h"])
    assert result.exit_code == 0, result.output
    out = [line.split("  ", 1)[1] for line in result.output.splitlines() if "  " in line]
    assert out[0] == f"grant    requested {REQUESTER} -> orders-prod/orders_owner grant {first['id']} by {REQUESTER}"
    assert out[1].startswith(f"grant    approved  {APPROVER} -> orders-prod/orders_owner grant {first['id']} until ")
    assert out[3].startswith(f"grant    denied    {APPROVER}")
    assert out[4] == f"grant    refused   {STRANGER} -> orders-prod/orders_owner (no_matching_rule)"
    assert out[7] == f"grant    revoked   {REQUESTER} -> orders-prod/orders_owner grant {third['id']}"
    assert out[8] == f"grant    expired   (time) -> orders-prod/orders_owner grant {first['id']}"
    assert out[9] == "session  ended    orders-prod/orders_owner session 4242 (no_live_grant)"
    as_json = CliRunner().invoke(audit, ["--log-group", "/aws/lambda/rdsvend-test", "--policy", str(policy), "--json"])
    kinds = [e["kind"] for e in json.loads(as_json.output)["entries"]]
    assert kinds == ["grant"] * 10


def test_a_pending_request_is_published_to_the_alert_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.canary.alerts import SnsNotifier

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_grants_table(dynamodb, "grants")
        sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="rdsvend-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="approvers")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        service = GrantService(store=DynamoGrantStore(dynamodb, "grants"), notifier=SnsNotifier(topic, sns),
                               policy_source=StaticPolicySource(load_policy_text(GRANT_POLICY, "g.yaml")))
        grant = service.request(identity_from_arn(REQUESTER), ASK, "r1")
        (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        envelope = json.loads(message["Body"])
        assert envelope["Subject"] == "rdsvend grant awaiting approval: orders-prod/orders_owner"
        body = json.loads(envelope["Message"])
        assert body == {"event": "grant_requested", "grant_id": grant["id"], "database": "orders-prod",
                        "db_user": "orders_owner", "requester": REQUESTER, "reason": "INC-9",
                        "duration_seconds": 600, "rule": "oncall-owner"}
        # a topic that refuses: the request still stands (approvers list it), and it is logged
        service.notifier = SnsNotifier(topic + "-gone", sns)
        assert service.request(identity_from_arn(REQUESTER), ASK, "r2")["state"] == "pending"
