"""The fleet-wide rate limit: two service instances (each with its own DynamoDB client, as two
Lambda instances have) share one moto table in server mode, so a caller's RATE/BURST holds
across them; when the table fails, each instance falls back to its own limit and says so.

Time is a shared FrozenClock (the limiter's only clock), so "one second later" is exact.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from chalicelib.clock import FrozenClock
from chalicelib.errors import RateLimitedError
from chalicelib.identity import CallerIdentity, identity_from_arn
from chalicelib.observability import flush_metrics, invocation
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.signer import TokenMinter
from chalicelib.vending.pipeline import VendingService, rate_limiter_from_env
from chalicelib.vending.ratelimit import CallerLimiter, RateLimiter
from chalicelib.vending.ratelimit_table import (
    KEY_ATTRIBUTE,
    RETRY_TABLE_AFTER,
    TTL_ATTRIBUTE,
    TableRateLimiter,
)
from tests.support.policies import PolicyEndpoints, allow_rule, one_database_policy

pytestmark = pytest.mark.e2e  # starts a server: not in the fast tier

TABLE = "rdsvend-test-rate"
ALICE = identity_from_arn("arn:aws:sts::111122223333:assumed-role/orders-api/i-1")
BOB = identity_from_arn("arn:aws:sts::111122223333:assumed-role/billing-api/i-2")
REQUEST = {"database": "orders-prod", "db_user": "orders_app"}
POLICY = one_database_policy(extra="host: orders-prod.abc.us-east-1.rds.amazonaws.com\nport: 5432\ndbname: orders",
                             rules=[allow_rule("apis", ["arn:aws:iam::111122223333:role/*-api"])])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def dynamodb(url: str, **config: Any) -> Any:
    """A client of its own, as each Lambda instance has."""
    return boto3.Session(aws_access_key_id="AKIDRATETEST", aws_secret_access_key="rate-test-secret",
                         aws_session_token="rate-test-session-token", region_name="us-east-1").client(
        "dynamodb", endpoint_url=url, config=Config(**config) if config else None)


def create_table(url: str, name: str = TABLE) -> None:
    client = dynamodb(url)
    client.create_table(TableName=name, KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True,
                                                                         "AttributeName": TTL_ATTRIBUTE})


@pytest.fixture
def table(moto_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"rate-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    create_table(moto_url, name)
    yield name
    dynamodb(moto_url).delete_table(TableName=name)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))


def service(limiter: CallerLimiter | None) -> VendingService:
    resolver = PolicyEndpoints()
    return VendingService(policy_source=StaticPolicySource(load_policy_text(POLICY, "rate-test.yaml")),
                          minter=TokenMinter(cache_tokens=False), resolver=resolver, rate_limiter=limiter)


def instance(url: str, table: str, clock: FrozenClock, rate: float = 1.0, burst: int = 3,
             client: Any = None) -> VendingService:
    return service(TableRateLimiter(client or dynamodb(url), table, rate, burst, clock=clock))


def outcome(svc: VendingService, who: CallerIdentity = ALICE) -> str:
    try:
        svc.vend(who, dict(REQUEST), "req-rate")
    except RateLimitedError as exc:
        return f"limited:{exc.retry_after}"
    return "ok"


def test_two_instances_share_one_callers_burst(moto_url: str, table: str, clock: FrozenClock) -> None:
    first, second = instance(moto_url, table, clock), instance(moto_url, table, clock)
    out = io.StringIO()
    with redirect_stdout(out):
        seen = [outcome(svc) for svc in (first, second, first, second, first)]
    # Burst 3 in all, not 3 per instance: the 4th request is refused whichever instance gets it.
    assert seen == ["ok", "ok", "ok", "limited:1", "limited:1"]
    audits = [json.loads(line) for line in out.getvalue().splitlines() if '"event":"vend"' in line]
    assert [a["reason"] for a in audits] == ["allowed"] * 3 + ["rate_limited"] * 2
    # One second later one token is back, for the fleet.
    clock.advance(1)
    assert [outcome(second), outcome(first)] == ["ok", "limited:1"]


def test_each_instances_own_limiter_would_have_let_twice_the_burst_through(clock: FrozenClock) -> None:
    first, second = service(RateLimiter(1.0, 3, clock=clock)), service(RateLimiter(1.0, 3, clock=clock))
    with redirect_stdout(io.StringIO()):
        assert [outcome(svc) for svc in (first, second) * 3] == ["ok"] * 6


def test_callers_are_counted_apart(moto_url: str, table: str, clock: FrozenClock) -> None:
    first, second = instance(moto_url, table, clock, burst=1), instance(moto_url, table, clock, burst=1)
    with redirect_stdout(io.StringIO()):
        assert [outcome(first, ALICE), outcome(second, BOB)] == ["ok", "ok"]
        assert [outcome(second, ALICE), outcome(first, BOB)] == ["limited:1", "limited:1"]


def test_retry_after_says_when_the_next_request_is_allowed(moto_url: str, table: str, clock: FrozenClock) -> None:
    first, second = instance(moto_url, table, clock, rate=0.1, burst=1), instance(moto_url, table, clock,
                                                                                 rate=0.1, burst=1)
    with redirect_stdout(io.StringIO()):
        assert outcome(first) == "ok"
        assert outcome(second) == "limited:10"
        clock.advance(9)
        assert outcome(second) == "limited:1"
        clock.advance(1)
        assert outcome(second) == "ok"
        clock.advance(3600)  # idle for an hour: the full burst again, nothing remembered
        assert outcome(first) == "ok"


def test_an_item_per_caller_that_expires_through_ttl(moto_url: str, table: str, clock: FrozenClock) -> None:
    with redirect_stdout(io.StringIO()):
        outcome(instance(moto_url, table, clock))
    item = dynamodb(moto_url).get_item(TableName=table, Key={KEY_ATTRIBUTE: {"S": ALICE.principal}})["Item"]
    expires = int(item[TTL_ATTRIBUTE]["N"])
    assert clock.now().timestamp() < expires <= clock.now().timestamp() + 120


class RacingClient:
    """Lets another instance take a token between this instance's read and its write."""

    def __init__(self, client: Any, before_write: Callable[[], object]) -> None:
        self._client, self._before_write, self.calls = client, before_write, 0

    def update_item(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:  # the write that relies on the value the first one returned
            self._before_write()
        return self._client.update_item(**kwargs)


def test_a_race_between_instances_for_the_last_token_has_one_winner(moto_url: str, table: str,
                                                                    clock: FrozenClock) -> None:
    other = instance(moto_url, table, clock, burst=2)
    won_by_other: list[str] = []
    racing = RacingClient(dynamodb(moto_url), lambda: won_by_other.append(outcome(other)))
    mine = instance(moto_url, table, clock, burst=2, client=racing)
    with redirect_stdout(io.StringIO()):
        assert outcome(other) == "ok"  # one of two tokens gone
        # mine's first write (for an idle caller) fails and returns the stored value; before
        # its second write (one token left), other takes that token; mine's conditional write
        # then fails on the changed value, and what it returns says: nothing left.
        assert outcome(mine) == "limited:1"
    assert won_by_other == ["ok"] and racing.calls == 2
    item = dynamodb(moto_url).get_item(TableName=table, Key={KEY_ATTRIBUTE: {"S": ALICE.principal}})["Item"]
    taken = (int(item["tat"]["N"]) - int(clock.now().timestamp() * 1_000_000)) / 1_000_000
    assert taken == 2.0, "exactly the burst was taken, by the two requests that got a token"


def emf_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if '"_aws"' in line]


def test_table_failure_falls_back_to_the_instance_limit_and_says_so(moto_url: str, clock: FrozenClock) -> None:
    missing = "rate-table-not-created-yet"
    limiter = TableRateLimiter(dynamodb(moto_url), missing, 1.0, 2, clock=clock)
    svc = service(limiter)
    out = io.StringIO()
    with redirect_stdout(out), invocation("req-fallback"):
        seen = [outcome(svc) for _ in range(3)]
    # Vending goes on under the same RATE/BURST, counted by this instance alone.
    assert seen == ["ok", "ok", "limited:1"]
    assert limiter.degraded
    written = out.getvalue()
    warnings = [json.loads(line) for line in written.splitlines() if "fleet rate limit" in line]
    assert len(warnings) == 1, "one warning when the fallback starts, not one per request"
    assert warnings[0]["rate_table"] == missing
    assert warnings[0]["error_code"] == "ResourceNotFoundException"
    assert warnings[0]["correlation_id"] == "req-fallback"
    # One EMF line for the invocation, counting the three requests the instance decided alone.
    flushed = [line for line in emf_lines(written) if "RateLimitFallback" in line]
    assert [line["RateLimitFallback"] for line in flushed] == [[1.0, 1.0, 1.0]]
    for secret in ("rate-test-secret", "rate-test-session-token"):
        assert secret not in written

    # The table appears; the instance tries it again only after RETRY_TABLE_AFTER seconds.
    create_table(moto_url, missing)
    try:
        clock.advance(1)
        out = io.StringIO()
        with redirect_stdout(out):
            assert outcome(svc) == "ok"  # still local: its bucket got one token back
            assert dynamodb(moto_url).scan(TableName=missing)["Count"] == 0
            clock.advance(RETRY_TABLE_AFTER)
            assert outcome(svc) == "ok"
        assert not limiter.degraded
        assert "fleet rate limit restored" in out.getvalue()
        assert dynamodb(moto_url).scan(TableName=missing)["Count"] == 1
    finally:
        dynamodb(moto_url).delete_table(TableName=missing)


def test_unreachable_dynamodb_falls_back_without_failing_the_vend(clock: FrozenClock) -> None:
    client = dynamodb("http://127.0.0.1:9", retries={"total_max_attempts": 1}, connect_timeout=1)
    limiter = TableRateLimiter(client, TABLE, 1.0, 1, clock=clock)
    out = io.StringIO()
    with redirect_stdout(out):
        assert [outcome(service(limiter)), outcome(service(limiter))] == ["ok", "limited:1"]
        flush_metrics()
    assert "EndpointConnectionError" in out.getvalue()


def test_configuration_from_the_environment(moto_url: str) -> None:
    def clients(service: str, region: str | None = None) -> Any:
        return dynamodb(moto_url)

    fleet = rate_limiter_from_env({"RDSVEND_RATE_LIMIT": "5/20", "RDSVEND_RATE_TABLE": "rdsvend-prod-rate"},
                                  clients)
    assert isinstance(fleet, TableRateLimiter)
    assert (fleet.table, fleet.rate, fleet.burst) == ("rdsvend-prod-rate", 5.0, 20)
    assert (fleet.fallback.rate, fleet.fallback.burst) == (5.0, 20)
    assert isinstance(rate_limiter_from_env({}, clients), RateLimiter)
    assert rate_limiter_from_env({"RDSVEND_RATE_LIMIT": "off", "RDSVEND_RATE_TABLE": "t-1"}, clients) is None
    with pytest.raises(ValueError) as raised:
        rate_limiter_from_env({"RDSVEND_RATE_TABLE": "no spaces/allowed"}, clients)
    assert str(raised.value).startswith("RDSVEND_RATE_TABLE 'no spaces/allowed' is not a DynamoDB table name")
