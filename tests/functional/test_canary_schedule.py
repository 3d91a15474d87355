"""The scheduled function ``canary`` through Chalice's test client, with moto for AWS: the
report as a log line, EMF metrics, one SNS alert per status change, no secret in the output."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.errors import CanaryRunError
from devtools.local.postgres import free_port
from tests.support.aws import make_alert_sink
from tests.support.policies import one_database_policy

TABLE = "rdsvend-canary-state"


@pytest.fixture
def world(aws_env: pytest.MonkeyPatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        rds = session.client("rds")
        rds.create_db_instance(DBInstanceIdentifier="orders-prod", Engine="postgres", DBInstanceClass="db.t4g.micro",
                               MasterUsername="admin", MasterUserPassword="x" * 12, AllocatedStorage=20,
                               EnableIAMDatabaseAuthentication=True)
        resource_id = rds.describe_db_instances()["DBInstances"][0]["DbiResourceId"]
        iam = session.client("iam")
        iam.create_role(RoleName="vend", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
        iam.put_role_policy(RoleName="vend", PolicyName="connect", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "rds-db:connect", "Resource":
                f"arn:aws:rds-db:us-east-1:123456789012:dbuser:{resource_id}/orders_app"}]}))
        sink = make_alert_sink(session, TABLE, "alerts")
        sqs, queue, topic = sink["sqs"], sink["queue"], sink["topic"]
        policy = tmp_path / "access.yaml"
        policy.write_text(one_database_policy(extra=f"host: 127.0.0.1\nport: {free_port()}\ndbname: orders",
                                              more="canary: {timeout_seconds: 5, concurrency: 2}"))
        # The function runs as its role (a session of "vend"), which also signs: no signer_role.
        creds = session.client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/vend",
                                                  RoleSessionName="rdsvend-canary")["Credentials"]
        for key, value in {"RDSVEND_POLICY": str(policy), "RDSVEND_STATE_TABLE": TABLE, "RDSVEND_ALERT_TOPIC": topic,
                           "AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                           "AWS_SESSION_TOKEN": creds["SessionToken"]}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        monkeypatch.delenv("RDSVEND_SIGNER_PRINCIPAL", raising=False)
        monkeypatch.delenv("RDSVEND_CANARY_ADMIN_DSN", raising=False)
        monkeypatch.delenv("RDSVEND_LOCAL_ADMIN_DSN", raising=False)
        from chalicelib.aws import clients

        monkeypatch.setattr(clients, "_default", None)  # clients made inside this moto
        yield {"sqs": sqs, "queue": queue, "tmp": tmp_path, "policy": policy, "secret": creds["SecretAccessKey"]}


def _invoke(tmp_path: Path) -> Any:
    from app import app
    from chalicelib.observability import metrics

    metrics.clear_metrics()  # what earlier tests of this process recorded is not this run's

    with Client(app, project_dir=str(tmp_path)) as client:
        event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                                resources=["arn:aws:events:us-east-1:123456789012:rule/canary"])
        return client.lambda_.invoke("canary", event).payload


def _messages(world: dict[str, Any]) -> list[Any]:
    got = world["sqs"].receive_message(QueueUrl=world["queue"], MaxNumberOfMessages=10).get("Messages", [])
    for m in got:
        world["sqs"].delete_message(QueueUrl=world["queue"], ReceiptHandle=m["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in got]


def test_scheduled_canary_logs_metrics_and_alerts_once(world: dict[str, Any],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    result = _invoke(world["tmp"])
    assert result == {"summary": {"targets": 1, "pass": 0, "warn": 0, "fail": 1, "error": 0}, "alerts": 1}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    report = next(line for line in lines if isinstance(line.get("message"), dict)
                  and line["message"].get("event") == "canary_report")
    assert report["correlation_id"] == "7bf73129-1428-4cd3-a780-95db273d1602"
    checks = {c["id"]: c["status"] for c in report["message"]["targets"][0]["checks"]}
    assert checks["db.connect"] == "fail" and checks["rds.found"] == "pass" and checks["iam.signer_allows"] == "pass"
    assert checks["rds.endpoint"] == "warn"  # 127.0.0.1 is not the RDS endpoint
    failing = [line["message"]["check"] for line in lines if isinstance(line.get("message"), dict)
               and line["message"].get("event") == "canary_check"]
    assert sorted(failing) == ["db.connect", "rds.endpoint"]
    emf = [line for line in lines if "_aws" in line]
    assert len(emf) == 1 and emf[0]["db_user"] == "orders_app"
    text = "\n".join(json.dumps(line) for line in lines)
    assert "X-Amz-Signature" not in text and "Action=connect" not in text  # the token never reaches a log
    assert world["secret"] not in text

    (alert,) = _messages(world)
    assert (alert["previous"], alert["status"]) == (None, "fail")
    assert _invoke(world["tmp"])["alerts"] == 0
    assert _messages(world) == []


def test_a_policy_that_does_not_load_fails_the_invocation_loudly(world: dict[str, Any],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    world["policy"].write_text("version: 1\nbogus: true\n")
    with pytest.raises(Exception) as caught:
        _invoke(world["tmp"])
    assert "bogus" in str(caught.value)
    out = capsys.readouterr().out
    assert "canary_policy_unavailable" in out


# -- a canary that cannot do its job says so: an alert, an error metric, a failed invocation ---
def _run_failed_alerts(world: dict[str, Any]) -> list[Any]:
    return [m for m in _messages(world) if m.get("event") == "canary_run_failed"]


def _emf_run_failures(out: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [d for d in docs if "CanaryRunFailed" in d]


def test_a_missing_policy_parameter_alerts_and_fails_the_invocation(world: dict[str, Any],
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RDSVEND_POLICY", "ssm:/rdsvend/no-such-policy")
    with pytest.raises(CanaryRunError) as caught:
        _invoke(world["tmp"])
    assert caught.value.stage == "policy"
    (alert,) = _run_failed_alerts(world)
    assert alert["stage"] == "policy" and "/rdsvend/no-such-policy" in alert["message"]
    (metric,) = _emf_run_failures(capsys.readouterr().out)
    assert metric["CanaryRunFailed"] == [1.0] and metric["stage"] == "policy"


def test_a_misspelled_state_table_alerts_with_the_report_and_fails_the_invocation(
    world: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RDSVEND_STATE_TABLE", "rdsvend-canary-stat")  # one letter short
    with pytest.raises(CanaryRunError) as caught:
        _invoke(world["tmp"])
    assert caught.value.stage == "state" and "rdsvend-canary-stat" in str(caught.value)
    (alert,) = _run_failed_alerts(world)
    assert alert["stage"] == "state" and "ResourceNotFoundException" in alert["message"]
    # the state is unknown, so the alert carries what is failing right now
    assert alert["summary"]["fail"] == 1
    assert [(t["database"], t["db_user"], t["status"]) for t in alert["targets"]] == [("orders-prod", "orders_app", "fail")]
    out = capsys.readouterr().out
    assert _emf_run_failures(out)[0]["stage"] == "state"
    assert world["secret"] not in out and world["secret"] not in json.dumps(alert)


def test_with_policy_and_topic_both_broken_the_invocation_still_fails_and_says_why(
    world: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RDSVEND_POLICY", str(world["tmp"] / "missing.yaml"))
    monkeypatch.setenv("RDSVEND_ALERT_TOPIC", "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    with pytest.raises(CanaryRunError) as caught:
        _invoke(world["tmp"])
    assert caught.value.stage == "policy"
    out = capsys.readouterr().out
    assert "canary_run_failed_not_alerted" in out and "NotFound" in out
    assert _emf_run_failures(out)[0]["CanaryRunFailed"] == [1.0]
    assert _messages(world) == []


def test_an_alert_that_cannot_be_published_fails_the_invocation(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RDSVEND_ALERT_TOPIC", "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    with pytest.raises(CanaryRunError) as caught:
        _invoke(world["tmp"])
    assert caught.value.stage == "alerts" and "orders-prod/orders_app" in str(caught.value)
    assert _emf_run_failures(capsys.readouterr().out)[0]["stage"] == "alerts"
