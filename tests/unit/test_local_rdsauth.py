"""The local stack's RDS token checker, against tokens made by botocore's generate_db_auth_token."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import botocore.session
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from chalicelib.clock import FrozenClock
from devtools.local.rdsauth import RdsInstance, RdsTokenChecker, dbuser_arn
from devtools.local.sigv4 import Credential, StaticSecretLookup

AT = datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)
ACCOUNT = "210987654321"
REGION = "us-east-1"
ENDPOINT = "orders.cabcdef12345.us-east-1.rds.amazonaws.com"
INSTANCE = RdsInstance(REGION, ACCOUNT, "db-ORDERS1234567890ABCDEFGH", frozenset({"localhost", "127.0.0.1", ENDPOINT}), 15432, "orders")
SIGNER = Credential("ASIASIGNER000000001", "signer/secret+0000000000000000000000000000",
                    "IQoJb3JpZ2luX2VjE" + "A" * 1100 + "/+==", f"arn:aws:sts::{ACCOUNT}:assumed-role/rdsvend-signer/s", ACCOUNT)
LONG = Credential("AKIALONG00000000001", "long/secret+00000000000000000000000000000", None,
                  f"arn:aws:iam::{ACCOUNT}:user/ops", ACCOUNT)
FOREIGN = Credential("AKIAFOREIGN00000001", "foreign-secret-00000000000000000000000000", None,
                     "arn:aws:iam::999999999999:user/x", "999999999999")
SECRETS = (SIGNER.secret_key, SIGNER.session_token, LONG.secret_key, FOREIGN.secret_key)


@functools.cache
def _client(cred: Credential) -> Any:
    session = botocore.session.Session()
    session.set_credentials(cred.access_key_id, cred.secret_key, cred.session_token)
    return session.create_client("rds", region_name=REGION)


def token(cred: Credential = SIGNER, host: str = "localhost", port: int = 15432, user: str = "app_user",
          region: str = REGION, at: datetime = AT) -> str:
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        return str(_client(cred).generate_db_auth_token(host, port, user, region))


def hand_signed(params: Mapping[str, str], cred: Credential = LONG, expires: int = 900, at: datetime = AT) -> str:
    request = AWSRequest(method="GET", url="https://localhost:15432/", params=params)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        SigV4QueryAuth(Credentials(cred.access_key_id, cred.secret_key, cred.session_token), "rds-db", REGION,
                       expires=expires).add_auth(request)
    assert request.url is not None
    return request.url[len("https://"):]


class Permissions:
    """A permission check the test controls; records what it was asked."""

    def __init__(self, allowed: bool = True, error: Exception | None = None) -> None:
        self.allowed = allowed
        self.error = error
        self.calls: list[tuple[Credential, str]] = []

    def __call__(self, credential: Credential, arn: str) -> tuple[bool, str]:
        self.calls.append((credential, arn))
        if self.error is not None:
            raise self.error
        return (self.allowed, "identity policy allows" if self.allowed else "explicit deny in scp")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(AT)


@pytest.fixture
def permissions() -> Permissions:
    return Permissions()


@pytest.fixture
def checker(clock: FrozenClock, permissions: Permissions) -> RdsTokenChecker:
    return RdsTokenChecker(StaticSecretLookup([SIGNER, LONG, FOREIGN]), endpoints={"orders": INSTANCE},
                           permission_check=permissions, clock=clock)


@pytest.mark.parametrize("cred", [SIGNER, LONG], ids=["session", "long-term"])
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", ENDPOINT, ENDPOINT.upper()])
def test_a_valid_token_logs_in_and_is_judged_on_the_dbuser_arn(checker: RdsTokenChecker, permissions: Permissions,
                                                               cred: Credential, host: str) -> None:
    tok = token(cred, host=host)
    assert checker.check("app_user", tok) is True
    assert permissions.calls == [(cred, f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:db-ORDERS1234567890ABCDEFGH/app_user")]
    verdict = checker.verify("app_user", tok)
    assert (verdict.allowed, verdict.principal, verdict.instance) == (True, cred.principal_arn, "orders")


def test_session_token_is_about_one_and_a_half_kilobytes(checker: RdsTokenChecker) -> None:
    assert 1400 < len(token()) < 2000


@pytest.mark.parametrize(
    "make, user, reason",
    [
        (lambda: token(host="otherhost"), "app_user", "wrong_host"),
        (lambda: token(port=5432), "app_user", "wrong_host"),
        (lambda: token(user="admin"), "app_user", "wrong_user"),
        (lambda: token(user="App_User"), "app_user", "wrong_user"),
        (lambda: token(region="eu-west-1"), "app_user", "wrong_region"),
        (lambda: token(FOREIGN), "app_user", "wrong_account"),
        (lambda: token()[:-1] + ("0" if token()[-1] != "0" else "1"), "app_user", "signature:bad_signature"),
        (lambda: token().replace("DBUser=app_user", "DBUser=admin"), "admin", "signature:bad_signature"),
        (lambda: token().replace("localhost:15432", "127.0.0.1:15432"), "app_user", "signature:bad_signature"),
        (lambda: "&".join(p for p in token().split("&") if not p.startswith("X-Amz-Security-Token")),
         "app_user", "signature:bad_session_token"),
        (lambda: hand_signed({"Action": "connect", "DBUser": "app_user"}, expires=3600), "app_user",
         "signature:expires_too_long"),
        (lambda: hand_signed({"Action": "describe", "DBUser": "app_user"}), "app_user", "wrong_action"),
        (lambda: hand_signed({"Action": "connect", "DBUser": "app_user", "Other": "1"}), "app_user",
         "unexpected_parameters"),
        (lambda: "", "app_user", "signature:missing"),
        (lambda: "not a token at all", "app_user", "signature:missing"),
    ],
    ids=["host", "port", "user", "user-case", "region", "account", "signature", "tampered-user", "tampered-host",
         "no-session-token", "expires-3600", "action", "extra-param", "empty", "garbage"],
)
def test_refused_tokens(
    checker: RdsTokenChecker,
    permissions: Permissions,
    make: Callable[[], str],
    user: str,
    reason: str,
) -> None:
    verdict = checker.verify(user, make())
    assert (verdict.allowed, verdict.reason) == (False, reason)
    assert permissions.calls == []


def test_unknown_key_is_refused(clock: FrozenClock, permissions: Permissions) -> None:
    only_long = RdsTokenChecker(StaticSecretLookup([LONG]), endpoints=INSTANCE, permission_check=permissions, clock=clock)
    assert only_long.verify("app_user", token(SIGNER)).reason == "signature:unknown_key"


def test_expiry_is_900_seconds_and_the_skew_is_bounded(checker: RdsTokenChecker, clock: FrozenClock) -> None:
    tok = token()
    clock.advance(900)
    assert checker.check("app_user", tok) is True
    clock.advance(1)
    assert checker.verify("app_user", tok).reason == "signature:expired"
    future = token(at=datetime(2025, 6, 7, 8, 29, 12, tzinfo=UTC))
    assert checker.verify("app_user", future).reason == "signature:stale"
    near_future = token(at=datetime(2025, 6, 7, 8, 29, 11, tzinfo=UTC))
    assert checker.check("app_user", near_future) is True


def test_permission_denied_is_refused(clock: FrozenClock) -> None:
    denied = Permissions(allowed=False)
    checker = RdsTokenChecker(StaticSecretLookup([SIGNER]), endpoints=INSTANCE, permission_check=denied, clock=clock)
    verdict = checker.verify("app_user", token())
    assert (verdict.allowed, verdict.reason) == (False, "not_permitted:explicit deny in scp")
    assert verdict.dbuser_arn == dbuser_arn(REGION, ACCOUNT, INSTANCE.resource_id, "app_user")
    assert checker.check("app_user", token()) is False


def test_failures_to_check_are_refusals(clock: FrozenClock) -> None:
    broken = Permissions(error=RuntimeError("iam down"))
    checker = RdsTokenChecker(StaticSecretLookup([SIGNER]), endpoints=INSTANCE, permission_check=broken, clock=clock)
    assert checker.verify("app_user", token()).reason == "could_not_check:RuntimeError"

    class DownLookup:
        def secret_for(self, access_key_id: str) -> Credential | None:
            raise ConnectionError("moto is down")

    checker = RdsTokenChecker(DownLookup(), endpoints=INSTANCE, permission_check=Permissions(), clock=clock)
    assert checker.check("app_user", token()) is False
    assert checker.verify("app_user", token()).reason == "could_not_check:ConnectionError"


def test_a_permission_check_that_returns_a_truthy_non_bool_does_not_admit(clock: FrozenClock) -> None:
    def breaks_its_contract(credential: Credential, arn: str) -> tuple[Any, str]:
        return "yes", "odd"  # truthy, but not True: the checker admits on True only

    checker = RdsTokenChecker(StaticSecretLookup([SIGNER]), endpoints=INSTANCE,
                              permission_check=breaks_its_contract, clock=clock)
    assert checker.check("app_user", token()) is False


def test_several_instances_are_told_apart_by_host_and_port(clock: FrozenClock, permissions: Permissions) -> None:
    other = RdsInstance(REGION, ACCOUNT, "db-OTHER", frozenset({"localhost"}), 25432)
    checker = RdsTokenChecker(StaticSecretLookup([SIGNER]), endpoints={"orders": INSTANCE, "other": other},
                              permission_check=permissions, clock=clock)
    verdict = checker.verify("app_user", token(port=25432))
    assert (verdict.allowed, verdict.instance) == (True, "other")
    assert permissions.calls[-1][1].endswith(":dbuser:db-OTHER/app_user")
    with pytest.raises(ValueError):
        RdsTokenChecker(StaticSecretLookup(), endpoints={"a": INSTANCE, "b": INSTANCE}, permission_check=permissions)


def test_logs_say_why_but_never_hold_the_token_or_secrets(checker: RdsTokenChecker,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    good = token()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    assert checker.check("app_user", good) is True
    assert checker.check("app_user", bad) is False
    assert checker.check("other_user", good) is False
    text = caplog.text
    assert "reason=signature:bad_signature" in text and "reason=wrong_user" in text
    assert "accepted" in text
    signature = good.rsplit("X-Amz-Signature=", 1)[1]
    for secret in (*SECRETS, signature, bad.rsplit("=", 1)[1], "X-Amz-Credential"):
        assert secret is not None and secret not in text
