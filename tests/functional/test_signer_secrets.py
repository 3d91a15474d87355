"""Tokens, secret keys, session tokens and signing keys never reach logs or exception text."""
from __future__ import annotations

import hashlib
import hmac
import logging
import traceback
from datetime import UTC
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from chalicelib.aws.clients import ClientFactory
from chalicelib.errors import UpstreamUnavailableError
from chalicelib.identity import identity_from_arn
from chalicelib.policy.model import Database, DbUser
from chalicelib.signer import SigningCredentials, StaticCredentialsProvider, TokenMinter
from chalicelib.signer.roles import StsRoleAssumer
from tests.support.aws import FaultInjector

CALLER = identity_from_arn("arn:aws:sts::111122223333:assumed-role/orders-api-1/i-0abc")
ROLE = "arn:aws:iam::444455556666:role/rdsvend-signer"
OWN = SigningCredentials("ASIAOWNKEY", "OwnSecretKeyValue/abc+def", "OwnSessionTokenValue==")


def db(signer_role: str | None) -> Database:
    return Database(name="orders-prod", engine="postgres", region="us-east-1", kind="instance",
                    identifier="orders-prod", users={"orders_app": DbUser("orders_app", "iam")},
                    signer_role=signer_role)


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, "rds-db", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def secrets_of(creds: SigningCredentials, date: str) -> list[str]:
    key = signing_key(creds.secret_key, date, "us-east-1")
    return [creds.secret_key, creds.token or "", key.hex(), repr(key), key.decode("latin-1")]


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret and secret not in text


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="rdsvend")
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    return caplog


def test_successful_mints_log_no_secret(everything_logged: pytest.LogCaptureFixture,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        minter = TokenMinter(credentials=StaticCredentialsProvider(OWN),
                             assume_role=StsRoleAssumer(ClientFactory(boto3.Session)))
        own = minter.mint(CALLER, db(None), "orders_app", "h.example", 5432)
        role = minter.mint(CALLER, db(ROLE), "orders_app", "h.example", 5432, resource_id="db-ABC")
        role_creds = minter.signing_credentials(CALLER, db(ROLE), "orders_app", "db-ABC")
    date = own.signed_at.strftime("%Y%m%d")
    secrets = [own.token, role.token, *secrets_of(OWN, date), *secrets_of(role_creds, date)]
    logged = capsys.readouterr().out + everything_logged.text
    assert "assumed signer role" in logged  # the log line exists ...
    assert_clean(logged, secrets)  # ... and carries no secret
    assert_clean(repr(minter) + repr(own) + repr(role) + repr(role_creds) + str(role_creds), secrets)


def test_failures_carry_no_secret_in_text_logs_or_traceback(everything_logged: pytest.LogCaptureFixture,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with mock.patch("botocore.endpoint.time.sleep"):
        faults = FaultInjector("Throttling", 400)
        minter = TokenMinter(credentials=StaticCredentialsProvider(OWN), assume_role=StsRoleAssumer(faults.factory))
        minter.mint(CALLER, db(None), "orders_app", "h.example", 5432)
        with pytest.raises(UpstreamUnavailableError) as info:
            minter.mint(CALLER, db(ROLE), "orders_app", "h.example", 5432, resource_id="db-ABC")
    err = info.value
    text = " ".join([str(err), repr(err), err.detail, err.caller_message,
                     "".join(traceback.format_exception(err)), capsys.readouterr().out, everything_logged.text])
    assert "Throttling" in text
    from datetime import datetime
    assert_clean(text, secrets_of(OWN, datetime.now(UTC).strftime("%Y%m%d")))
    # the environment's own credentials (conftest) do not leak either
    session_creds = boto3.Session().get_credentials().get_frozen_credentials()
    assert session_creds.secret_key not in err.detail


def test_signer_value_errors_name_the_field_not_the_credentials() -> None:
    minter = TokenMinter(credentials=StaticCredentialsProvider(OWN))
    with pytest.raises(ValueError) as info:
        minter.mint(CALLER, db(None), "orders_app", "bad host!", 5432)
    assert str(info.value) == "invalid database host 'bad host!'"
    assert_clean("".join(traceback.format_exception(info.value)), [OWN.secret_key, str(OWN.token)])
