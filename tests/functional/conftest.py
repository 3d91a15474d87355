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


def make_alert_sink(session, table: str, topic_name: str = "rdsvend-alerts") -> dict:
    """The canary's DynamoDB state table and SNS topic, with an SQS queue subscribed to read
    what was published (moto)."""
    ddb = session.client("dynamodb")
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    sns = session.client("sns")
    topic = sns.create_topic(Name=topic_name)["TopicArn"]
    sqs = session.client("sqs")
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return {"ddb": ddb, "sns": sns, "topic": topic, "sqs": sqs, "queue": queue}
