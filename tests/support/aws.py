"""moto helpers the functional tests share."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HTTPHeaders

from chalicelib.aws.clients import ClientFactory

__all__ = ["make_alert_sink", "FaultInjector", "STS_ERROR", "record_calls"]

#: An STS error answer, as STS writes it.
STS_ERROR = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
             '<Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>')


def make_alert_sink(session: Any, table: str, topic_name: str = "rdsvend-alerts") -> dict[str, Any]:
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


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


class FaultInjector:
    """Answers the first ``failures`` AssumeRole attempts with an STS error; lets later ones through."""

    def __init__(self, code: str, status: int, failures: int = 1000) -> None:
        self.code, self.status, self.failures = code, status, failures
        self.attempts = 0
        self.session = boto3.Session()
        self.session.events.register_first("before-send.sts.AssumeRole", self)
        self.factory = ClientFactory(session_factory=lambda: self.session)  # production retry config

    def __call__(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        self.attempts += 1
        if self.attempts > self.failures:
            return None
        body = STS_ERROR.format(code=self.code, message="secret-free message").encode()
        return AWSResponse(request.url, self.status, HTTPHeaders.from_dict({"x-amzn-requestid": "r-1"}), _Raw(body))


def record_calls(monkeypatch: pytest.MonkeyPatch, service: str) -> list[str]:
    """The operations every botocore client in this process calls on ``service`` from now on
    (reader sessions and the service's own clients included), in order."""
    seen: list[str] = []
    # botocore's one funnel for every API call; private, so its stubs do not name it
    original = vars(botocore.client.BaseClient)["_make_api_call"]

    def counting(self: botocore.client.BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == service:
            seen.append(operation)
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)
    return seen
