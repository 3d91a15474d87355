"""The enforcing middleware in front of a moto server of this process (devtools.local.authorize):
who may act through moto's account header, and what the denial log keeps. No local stack."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devtools.local.authorize import DenialLog, Enforcer
from devtools.local.aws import MotoSecretLookup, MotoServer
from devtools.local.denials import read_denials
from devtools.local.sessions import MANAGEMENT_ROOT_KEY, management_root

pytestmark = pytest.mark.e2e

ROOT_ACCOUNT = "123456789012"  # moto's default account: the organization's management account here
_ONE_TRY = Config(retries={"max_attempts": 1})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log_path = tmp_path_factory.mktemp("denials") / "denials.jsonl"
    moto = MotoServer()
    url = moto.start()
    moto.wrap(lambda app: Enforcer(app, MotoSecretLookup(), roots=[management_root(ROOT_ACCOUNT)],
                                   denials=DenialLog(log_path)))
    try:
        yield url, log_path.parent
    finally:
        moto.stop()


def _root(url: str, service: str, account: str = ROOT_ACCOUNT) -> Any:
    client = boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=MANAGEMENT_ROOT_KEY[0],
                          aws_secret_access_key=MANAGEMENT_ROOT_KEY[1], config=_ONE_TRY)
    client.meta.events.register("before-sign", lambda request, **_: request.headers.__setitem__(
        "x-moto-account-id", account))
    return client


def test_the_root_key_acts_for_its_account_and_a_users_header_is_ignored(server: tuple[str, Path]) -> None:
    url, state_dir = server
    iam = _root(url, "iam")
    iam.create_user(UserName="spoofer")
    iam.put_user_policy(UserName="spoofer", PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="spoofer")["AccessKey"]
    spoofer = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                           aws_secret_access_key=key["SecretAccessKey"], config=_ONE_TRY)
    # A user naming another account in moto's header still acts as itself, in its own account.
    spoofer.meta.events.register("before-sign", lambda request, **_: request.headers.__setitem__(
        "x-moto-account-id", "999999999999"))
    users = {u["UserName"] for u in spoofer.list_users()["Users"]}
    assert "spoofer" in users
    with pytest.raises(ClientError) as caught:
        spoofer.create_user(UserName="another")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    denial = read_denials(state_dir)[-1]
    assert (denial.action, denial.layer) == ("iam:CreateUser", "identity")
    assert denial.principal == f"arn:aws:iam::{ROOT_ACCOUNT}:user/spoofer"


def test_the_root_key_with_a_wrong_secret_is_refused(server: tuple[str, Path]) -> None:
    url, _ = server
    forged = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id=MANAGEMENT_ROOT_KEY[0],
                          aws_secret_access_key="guessed", config=_ONE_TRY)
    forged.meta.events.register("before-sign", lambda request, **_: request.headers.__setitem__(
        "x-moto-account-id", ROOT_ACCOUNT))
    with pytest.raises(ClientError) as caught:
        forged.list_users()
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_get_caller_identity_answers_any_valid_signature(server: tuple[str, Path]) -> None:
    url, _ = server
    iam = _root(url, "iam")
    iam.create_user(UserName="nobody")
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                       aws_secret_access_key=key["SecretAccessKey"], config=_ONE_TRY)
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{ROOT_ACCOUNT}:user/nobody"


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 403, "MissingAuthenticationToken"),
    ({"Authorization": "AWS4-HMAC-SHA256 nonsense"}, 400, "IncompleteSignature"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 400, "IncompleteSignature"),
    ({"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAXXXXXXXXXXXXXXXX/20260101/us-east-1/iam/aws4_request, "
                       "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64, "X-Amz-Date": "20260101T000000Z"},
     403, "InvalidClientTokenId"),
])
def test_unsigned_and_malformed_requests_get_a_precise_refusal(server: tuple[str, Path], headers: dict[str, Any],
                                                               status: int, code: str) -> None:
    import requests

    answer = requests.post(server[0] + "/", data=b"Action=ListUsers&Version=2010-05-08", timeout=10,
                           headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    assert answer.status_code == status
    assert f"<Code>{code}</Code>" in answer.text
