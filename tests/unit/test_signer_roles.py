"""Signer-role naming, scoping and the assumed-credentials cache (no network)."""
from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.clock import FrozenClock
from chalicelib.errors import UpstreamUnavailableError
from chalicelib.identity import identity_from_arn
from chalicelib.policy.model import Database, DbUser
from chalicelib.signer import SigningCredentials, StaticCredentialsProvider, TokenMinter
from chalicelib.signer.roles import (
    RoleCredentialsCache,
    RoleRequest,
    dbuser_arn,
    role_request,
    role_session_name_for,
    session_policy,
    source_identity_for,
    sts_name,
)
from tests.support.examples import examples

STS_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)
ROLE = "arn:aws:iam::444455556666:role/rdsvend-signer"
DB = Database(name="orders-prod", engine="postgres", region="eu-west-1", kind="instance",
              identifier="orders-prod", users={"orders_app": DbUser("orders_app", "iam")}, signer_role=ROLE)


@settings(max_examples=examples(200))
@given(st.text(max_size=300))
def test_sts_names_always_follow_sts_rules(value: str) -> None:
    name = sts_name(value)
    assert STS_NAME.fullmatch(name)
    assert sts_name(value) == name


def test_long_names_keep_a_hash_so_they_stay_distinct() -> None:
    a, b = "x" * 100 + "a", "x" * 100 + "b"
    assert sts_name(a) != sts_name(b)
    assert len(sts_name(a)) == 64


@pytest.mark.parametrize(
    ("arn", "source", "session"),
    [
        ("arn:aws:sts::111122223333:assumed-role/orders-api-1/i-0abc", "role.orders-api-1@111122223333",
         "role.orders-api-1.i-0abc@111122223333"),
        ("arn:aws:iam::111122223333:user/alice", "user.alice@111122223333", "user.alice@111122223333"),
        ("arn:aws:iam::111122223333:role/team/app/orders", "role.team.app.orders@111122223333",
         "role.orders@111122223333"),
        ("arn:aws:iam::111122223333:root", "root@111122223333", "root@111122223333"),
        ("arn:aws:sts::111122223333:assumed-role/r/alice@example.com", "role.r@111122223333",
         "role.r.alice@example.com@111122223333"),
    ],
)
def test_source_identity_and_session_name_come_from_the_caller(arn: str, source: str, session: str) -> None:
    identity = identity_from_arn(arn)
    assert source_identity_for(identity) == source
    assert role_session_name_for(identity) == session


_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@-", min_size=1, max_size=64)
_ACCOUNT = st.from_regex(r"[0-9]{12}", fullmatch=True)
_PATH = st.lists(st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=12), max_size=6).map(
    lambda parts: "/" + "".join(p + "/" for p in parts))
_CALLER_ARN = st.one_of(
    st.builds(lambda a, p, n: f"arn:aws:iam::{a}:user{p}{n}", _ACCOUNT, _PATH, _NAME),
    st.builds(lambda a, p, n: f"arn:aws:iam::{a}:role{p}{n}", _ACCOUNT, _PATH, _NAME),
    st.builds(lambda a, r, s: f"arn:aws:sts::{a}:assumed-role/{r}/{s}", _ACCOUNT, _NAME, _NAME),
    st.builds(lambda a, n: f"arn:aws:sts::{a}:federated-user/{n}", _ACCOUNT, _NAME),
    st.builds(lambda a: f"arn:aws:iam::{a}:root", _ACCOUNT),
)


@settings(max_examples=examples(300))
@given(_CALLER_ARN)
def test_the_session_name_of_every_kind_of_caller_fits_sts_and_names_its_account(arn: str) -> None:
    identity = identity_from_arn(arn)
    name = role_session_name_for(identity)
    assert STS_NAME.fullmatch(name), name
    assert name.endswith(f"@{identity.account}")
    assert role_session_name_for(identity_from_arn(arn)) == name  # deterministic


@settings(max_examples=examples(200))
@given(_ACCOUNT, _NAME, _NAME, _NAME)
def test_two_sessions_of_one_role_get_different_session_names(account: str, role: str, one: str, two: str) -> None:
    a = identity_from_arn(f"arn:aws:sts::{account}:assumed-role/{role}/{one}")
    b = identity_from_arn(f"arn:aws:sts::{account}:assumed-role/{role}/{two}")
    assert (role_session_name_for(a) == role_session_name_for(b)) == (one == two)


def test_a_long_generated_session_name_keeps_its_end_and_a_hash() -> None:
    base = "arn:aws:sts::111122223333:assumed-role/" + "orders-api-" * 5 + "/botocore-session-"
    first = role_session_name_for(identity_from_arn(base + "1" * 40 + "17"))
    second = role_session_name_for(identity_from_arn(base + "1" * 40 + "18"))
    assert len(first) == 64 and first.startswith("role.orders-")
    assert "11117=" in first and "11118=" in second
    assert first != second


def test_a_long_principal_keeps_its_account_within_64_characters() -> None:
    identity = identity_from_arn("arn:aws:iam::111122223333:role/" + "p/" * 40 + "r" * 64)
    value = source_identity_for(identity)
    assert STS_NAME.fullmatch(value) and value.endswith("@111122223333")


@pytest.mark.parametrize(
    ("role", "resource_id", "expected"),
    [
        (ROLE, "db-ABCDEFGHIJKLMNOP", "arn:aws:rds-db:eu-west-1:444455556666:dbuser:db-ABCDEFGHIJKLMNOP/app"),
        (ROLE, "cluster-ABC123", "arn:aws:rds-db:eu-west-1:444455556666:dbuser:cluster-ABC123/app"),
        (ROLE, "prx-0123abcd", "arn:aws:rds-db:eu-west-1:444455556666:dbuser:prx-0123abcd/app"),
        ("arn:aws-cn:iam::444455556666:role/s", "db-X", "arn:aws-cn:rds-db:eu-west-1:444455556666:dbuser:db-X/app"),
    ],
)
def test_dbuser_arn_uses_the_role_account_and_the_resource_id(role: str, resource_id: str, expected: str) -> None:
    assert dbuser_arn(role, "eu-west-1", resource_id, "app") == expected


@pytest.mark.parametrize("resource_id", ["orders-prod", "db-", "db-*", "db-a/b", ""])
def test_a_resource_id_that_is_not_one_is_refused(resource_id: str) -> None:
    with pytest.raises(ValueError, match="invalid resource id"):
        dbuser_arn(ROLE, "eu-west-1", resource_id, "app")


def test_the_session_policy_allows_only_connect_on_one_dbuser() -> None:
    arn = "arn:aws:rds-db:eu-west-1:444455556666:dbuser:db-X/app"
    assert json.loads(session_policy(arn)) == {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "rds-db:connect", "Resource": arn}],
    }


def test_a_signer_role_without_a_resource_id_fails_closed() -> None:
    identity = identity_from_arn("arn:aws:iam::111122223333:role/app")
    with pytest.raises(UpstreamUnavailableError) as info:
        role_request(identity, DB, "orders_app", None)
    assert info.value.service == "rds"


class FakeSts:
    def __init__(self, clock: FrozenClock, lifetime: timedelta = timedelta(hours=1),
                 gate: threading.Event | None = None) -> None:
        self.clock, self.lifetime, self.gate = clock, lifetime, gate
        self.calls: list[RoleRequest] = []
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self, request: RoleRequest) -> SigningCredentials:
        with self.lock:
            self.calls.append(request)
            n = len(self.calls)
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise UpstreamUnavailableError("sts", detail="AssumeRole failed: Throttling")
        return SigningCredentials(f"ASIAROLE{n:04d}", f"rolesecret{n}", f"roletoken{n}",
                                  self.clock.now() + self.lifetime)


REQ = RoleRequest(ROLE, "eu-west-1", "role.app@111122223333", "role.app@111122223333",
                  "arn:aws:rds-db:eu-west-1:444455556666:dbuser:db-X/app")


def test_role_credentials_are_cached_and_refreshed_ahead_of_expiry() -> None:
    clock = FrozenClock(T0)
    sts = FakeSts(clock)
    cache = RoleCredentialsCache(sts, clock=clock)
    first = cache.get(REQ)
    clock.advance(43 * 60)  # 17 minutes left
    assert cache.get(REQ) is first and len(sts.calls) == 1
    clock.advance(2 * 60)  # 15 minutes left: refresh so tokens keep their full life
    assert cache.get(REQ).access_key == "ASIAROLE0002"


def test_previous_credentials_are_served_when_a_refresh_fails_but_they_still_work() -> None:
    clock = FrozenClock(T0)
    sts = FakeSts(clock)
    cache = RoleCredentialsCache(sts, clock=clock)
    first = cache.get(REQ)
    clock.advance(50 * 60)
    sts.fail = True
    assert cache.get(REQ) is first
    clock.advance(5 * 60)  # 5 minutes left: too little to sign with
    with pytest.raises(UpstreamUnavailableError):
        cache.get(REQ)


def test_one_refresh_in_flight_per_key() -> None:
    clock = FrozenClock(T0)
    gate = threading.Event()
    sts = FakeSts(clock, gate=gate)
    cache = RoleCredentialsCache(sts, clock=clock)
    results: list[SigningCredentials] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(REQ))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(sts.calls) == 1
    assert len(results) == 8 and len({r.access_key for r in results}) == 1


def test_callers_keep_signing_with_old_credentials_while_one_refreshes() -> None:
    clock = FrozenClock(T0)
    gate = threading.Event()
    sts = FakeSts(clock)
    cache = RoleCredentialsCache(sts, clock=clock)
    first = cache.get(REQ)
    clock.advance(50 * 60)  # 10 minutes left: due for refresh, still usable
    sts.gate = gate
    refresher = threading.Thread(target=cache.get, args=(REQ,))
    refresher.start()
    deadline = time.monotonic() + 5
    while len(sts.calls) < 2 and time.monotonic() < deadline:  # the refresher is inside AssumeRole
        time.sleep(0.01)
    assert cache.get(REQ) is first  # not blocked behind the slow AssumeRole
    gate.set()
    refresher.join(5)
    assert len(sts.calls) == 2 and cache.get(REQ).access_key == "ASIAROLE0002"


def test_minter_signs_with_the_role_and_caps_expiry_by_the_role_credentials() -> None:
    clock = FrozenClock(T0)
    sts = FakeSts(clock, lifetime=timedelta(minutes=10))
    minter = TokenMinter(clock=clock, credentials=StaticCredentialsProvider(SigningCredentials("AKIDOWN", "own")),
                         assume_role=sts)
    caller = identity_from_arn("arn:aws:sts::111122223333:assumed-role/orders-api-1/i-0abc")
    token = minter.mint(caller, DB, "orders_app", "db.example.com", 5432, resource_id="db-ABC")
    assert "X-Amz-Credential=ASIAROLE0001%2F" in token.token
    assert "X-Amz-Security-Token=roletoken1" in token.token
    assert token.expires_at == T0 + timedelta(minutes=10) - timedelta(seconds=30)
    (request,) = sts.calls
    assert request.source_identity == "role.orders-api-1@111122223333"
    assert request.dbuser_arn == "arn:aws:rds-db:eu-west-1:444455556666:dbuser:db-ABC/orders_app"
    # another caller gets its own role session
    other = identity_from_arn("arn:aws:iam::111122223333:role/billing")
    minter.mint(other, DB, "orders_app", "db.example.com", 5432, resource_id="db-ABC")
    assert len(sts.calls) == 2 and sts.calls[1].source_identity == "role.billing@111122223333"
