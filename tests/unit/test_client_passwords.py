"""The client's PasswordSource against Secrets Manager (moto, in process): AWSCURRENT cached for
its ttl, AWSPENDING on demand, bad secrets refused with the secret and field named, never the
password; the client imports botocore only."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rdsvend.passwords import PasswordSource, SecretReadError, is_auth_failure

SECRET = {"engine": "postgres", "host": "db.example", "port": 5432, "username": "reports",
          "password": "s3cret-value-xyz", "dbname": "orders"}


@pytest.fixture
def sm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_current_is_cached_for_its_ttl_and_pending_is_read_each_time(sm: Any) -> None:
    sm.create_secret(Name="rdsvend/orders/reports", SecretString=json.dumps(SECRET))
    now = [0.0]
    source = PasswordSource("rdsvend/orders/reports", client=sm, ttl=60, clock=lambda: now[0])
    assert source.current().password == "s3cret-value-xyz"
    assert source.pending() is None
    token = "0f7a6c1e-3b7c-4c2d-9a55-0d2b6f1e9c11"
    sm.put_secret_value(SecretId="rdsvend/orders/reports", ClientRequestToken=token,
                        SecretString=json.dumps(dict(SECRET, password="next-value-abc")), VersionStages=["AWSPENDING"])
    pending = source.pending()
    assert pending is not None and pending.password == "next-value-abc"
    current = sm.describe_secret(SecretId="rdsvend/orders/reports")["VersionIdsToStages"]
    old = next(v for v, s in current.items() if "AWSCURRENT" in s)
    sm.update_secret_version_stage(SecretId="rdsvend/orders/reports", VersionStage="AWSCURRENT",
                                   MoveToVersionId=token, RemoveFromVersionId=old)
    assert source.current().password == "s3cret-value-xyz"  # cached
    now[0] = 61
    assert source.current().password == "next-value-abc"
    assert "next-value-abc" not in repr(source.current()) and "next-value-abc" not in repr(source)


@pytest.mark.parametrize("value, words", [
    ("not json", "is not a JSON object"),
    (json.dumps([1]), "is not a JSON object"),
    (json.dumps(dict(SECRET, password=None)), "has no string 'password'"),
    (json.dumps(dict(SECRET, port="x")), "has an invalid 'port'"),
])
def test_bad_secrets_are_refused_naming_the_field(sm: Any, value: str, words: str) -> None:
    sm.create_secret(Name="bad", SecretString=value)
    with pytest.raises(SecretReadError) as info:
        PasswordSource("bad", client=sm).current()
    assert words in str(info.value) and "AWSCURRENT of bad" in str(info.value)
    assert "s3cret-value-xyz" not in str(info.value)


def test_a_missing_secret_is_a_client_error(sm: Any) -> None:
    with pytest.raises(SecretReadError, match="cannot read AWSCURRENT of nope: ResourceNotFoundException"):
        PasswordSource("nope", client=sm).current()


def test_auth_failures_are_told_apart_from_other_errors() -> None:
    assert is_auth_failure(Exception('FATAL:  password authentication failed for user "reports"'))
    assert is_auth_failure(Exception(1045, "Access denied for user 'reports'@'10.0.0.1'"))
    assert not is_auth_failure(Exception("connection refused"))
    assert not is_auth_failure(Exception(2003, "Can't connect"))
