"""Lambda's new execution environment after an update (devtools.local.cold_start): the local stack
starts a function it runs afresh once ``UpdateFunctionConfiguration`` or ``UpdateFunctionCode``
for it succeeds, and only then."""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from werkzeug.test import Client

from devtools.local.cold_start import ColdStarts, updated_function

REGION = "us-east-1"
AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/lambda/aws4_request, "
        "SignedHeaders=host, Signature=0")


@pytest.mark.parametrize(("method", "path", "name"), [
    ("PUT", "/2015-03-31/functions/rdsvend-local-vend/configuration", "rdsvend-local-vend"),
    ("PUT", "/2015-03-31/functions/rdsvend-local/code", "rdsvend-local"),
    ("PUT", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A222222222222%3Afunction%3Ardsvend-local-vend"
            "/configuration", "rdsvend-local-vend"),
    ("GET", "/2015-03-31/functions/rdsvend-local-vend/configuration", None),
    ("POST", "/2015-03-31/functions/rdsvend-local-vend/invocations", None),
    ("PUT", "/2015-03-31/functions/rdsvend-local-vend/concurrency", None),
])
def test_only_an_update_names_a_function(method: str, path: str, name: str | None) -> None:
    assert updated_function(method, path) == name


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "")
    return buffer.getvalue()


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        boto3.client("lambda", region_name=REGION).create_function(
            FunctionName="rdsvend-local-vend", Runtime="python3.11", Role=role, Handler="app.app",
            Code={"ZipFile": _zip()})
        yield DomainDispatcherApplication(create_backend_app)


def _put(client: Client, function: str, body: dict[str, str]) -> Any:
    return client.put(f"/2015-03-31/functions/{function}/configuration", data=json.dumps(body),
                      headers={"Authorization": AUTH, "Content-Type": "application/json",
                               "Host": f"lambda.{REGION}.amazonaws.com"})


def test_a_successful_update_starts_the_function_afresh_before_the_answer(app: Any) -> None:
    started: list[str] = []
    client = Client(ColdStarts(app, started.append))
    answer = _put(client, "rdsvend-local-vend", {"Description": "new environment"})
    assert answer.status_code == 200 and json.loads(answer.data)["Description"] == "new environment"
    assert started == ["rdsvend-local-vend"]


def test_a_failed_update_starts_nothing(app: Any) -> None:
    started: list[str] = []
    client = Client(ColdStarts(app, started.append))
    assert _put(client, "no-such-function", {"Description": "x"}).status_code == 404
    assert started == []
