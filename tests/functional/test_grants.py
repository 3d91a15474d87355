"""Grants in DynamoDB (moto): every transition and every refused one, racing approvers,
expiry at the boundary with a frozen clock, visibility, and the sweep."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.clock import FrozenClock
from chalicelib.errors import ForbiddenError, InvalidRequestError, UpstreamUnavailableError
from chalicelib.grants.errors import GrantConflictError, GrantNotFoundError, OwnGrantError
from chalicelib.grants.model import Action, Grant
from chalicelib.grants.service import GrantService
from chalicelib.grants.store import DynamoGrantStore, create_grants_table
from chalicelib.identity import CallerIdentity, identity_from_arn
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import Database
from chalicelib.policy_source import StaticPolicySource
from tests.support.grant_policies import APPROVER, DEPUTY, GRANT_POLICY, OTHER_REQUESTER, REQUESTER, STRANGER

T0 = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
ASK = {"database": "orders-prod", "db_user": "orders_owner", "reason": "INC-42: fix a stuck migration",
       "duration_seconds": 1800}


class Sessions:
    def __init__(self) -> None:
        self.open: dict[str, list[str]] = {}
        self.calls: list[str] = []
        self.failure: Exception | None = None

    def end_sessions(self, database: Database, db_user: str) -> list[str]:  # a test double
        key = f"{database.name}/{db_user}"
        self.calls.append(key)
        if self.failure is not None:
            raise self.failure
        return self.open.pop(key, [])


#: the grant service, its clock and the session ender it calls
World = tuple[GrantService, FrozenClock, Sessions]


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_grants_table(client, "grants")
        clock = FrozenClock(T0)
        sessions = Sessions()
        service = GrantService(store=DynamoGrantStore(client, "grants"),
                               policy_source=StaticPolicySource(load_policy_text(GRANT_POLICY, "g.yaml")),
                               clock=clock, sessions=sessions)
        yield service, clock, sessions


def who(arn: str) -> CallerIdentity:
    return identity_from_arn(arn)


def stored(service: GrantService, grant_id: str) -> Grant:
    """The grant as the table holds it (it must be there)."""
    grant = service.store.get(grant_id)
    assert grant is not None, f"no grant {grant_id} in the table"
    return grant


def ask(service: GrantService, arn: str = REQUESTER, **over: Any) -> dict[str, Any]:
    return service.request(who(arn), {**ASK, **over}, "req-1")


def test_request_is_pending_with_the_fields_the_api_shows(world: World) -> None:
    service, _clock, _ = world
    grant = ask(service)
    assert grant["state"] == "pending"
    assert {k: grant[k] for k in ("database", "db_user", "requester", "approver", "reason", "starts_at",
                                  "ends_at")} == {
        "database": "orders-prod", "db_user": "orders_owner", "requester": REQUESTER, "approver": None,
        "reason": ASK["reason"], "starts_at": None, "ends_at": None}
    assert grant["id"].startswith("g-")


def test_approve_starts_the_grant_and_sets_its_end(world: World) -> None:
    service, _clock, _ = world
    grant = ask(service)
    done = service.act(who(APPROVER), grant["id"], "approve", "req-2")
    assert (done["state"], done["approver"], done["starts_at"], done["ends_at"]) == (
        "approved", APPROVER, "2026-12-03T10:00:00Z", "2026-12-03T10:30:00Z")
    live = service.live_grant(REQUESTER, "orders-prod", "orders_owner")
    assert live is not None and live.id == grant["id"]
    assert service.live_grant(OTHER_REQUESTER, "orders-prod", "orders_owner") is None


@pytest.mark.parametrize("first,then", [
    ("approve", "approve"), ("approve", "deny"), ("deny", "approve"), ("deny", "deny"),
    ("revoke", "approve"), ("revoke", "deny"), ("revoke", "revoke")])
def test_refused_transitions_name_the_state(world: World, first: Action, then: Action) -> None:
    service, _clock, _ = world
    grant = ask(service)
    service.act(who(APPROVER), grant["id"], first, "r")
    with pytest.raises(GrantConflictError) as caught:
        service.act(who(DEPUTY), grant["id"], then, "r")
    assert caught.value.status == 409
    state = {"approve": "approved", "deny": "denied", "revoke": "revoked"}[first]
    assert str(caught.value) == f"grant '{grant['id']}' is {state}: it cannot be " + {
        "approve": "approved", "deny": "denied", "revoke": "revoked"}[then]


def test_deny_and_revoke_by_requester(world: World) -> None:
    service, _clock, _ = world
    denied = ask(service)
    assert service.act(who(APPROVER), denied["id"], "deny", "r")["state"] == "denied"
    pending = ask(service)
    assert service.act(who(REQUESTER), pending["id"], "revoke", "r")["state"] == "revoked"
    live = ask(service)
    service.act(who(APPROVER), live["id"], "approve", "r")
    revoked = service.act(who(REQUESTER), live["id"], "revoke", "r")
    assert (revoked["state"], revoked["revoked_by"]) == ("revoked", REQUESTER)
    assert service.live_grant(REQUESTER, "orders-prod", "orders_owner") is None


def test_expired_grant_cannot_be_approved_revoked_or_used(world: World) -> None:
    service, clock, _ = world
    grant = ask(service)
    service.act(who(APPROVER), grant["id"], "approve", "r")
    clock.advance(1799)
    assert service.live_grant(REQUESTER, "orders-prod", "orders_owner") is not None  # one second left
    clock.advance(1)  # exactly at ends_at: over
    assert service.live_grant(REQUESTER, "orders-prod", "orders_owner") is None
    for action in ("approve", "revoke"):
        with pytest.raises(GrantConflictError, match="is expired"):
            service.act(who(DEPUTY), grant["id"], action, "r")


def test_unapproved_request_expires_after_a_day(world: World) -> None:
    service, clock, _ = world
    grant = ask(service)
    clock.advance(86400)
    with pytest.raises(GrantConflictError, match="is expired: it cannot be approved"):
        service.act(who(APPROVER), grant["id"], "approve", "r")


def test_own_request_cannot_be_approved_or_denied_by_its_requester(world: World) -> None:
    service, _clock, _ = world
    grant = ask(service, arn=APPROVER)  # an approver asking for itself
    for action in ("approve", "deny"):
        with pytest.raises(OwnGrantError) as caught:
            service.act(who(APPROVER), grant["id"], action, "r")
        assert caught.value.status == 403
    assert service.act(who(DEPUTY), grant["id"], "approve", "r")["state"] == "approved"


def test_an_approver_who_read_a_pending_grant_loses_to_one_who_decided_meanwhile(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The interleaving a race produces, made certain: A reads the grant (pending), B denies it,
    A's conditional write then fails and A is told the grant is denied."""
    service, _clock, _ = world
    grant = ask(service)
    real_get = service.store.get

    def read_then_other_decides(grant_id: str) -> Grant | None:
        read: Grant | None = real_get(grant_id)
        monkeypatch.setattr(service.store, "get", real_get)
        assert service.act(who(DEPUTY), grant_id, "deny", "r")["state"] == "denied"
        return read

    monkeypatch.setattr(service.store, "get", read_then_other_decides)
    with pytest.raises(GrantConflictError, match="is denied: it cannot be approved"):
        service.act(who(APPROVER), grant["id"], "approve", "r")
    final = stored(service, grant["id"])
    assert (final.state, final.approver) == ("denied", DEPUTY)


def test_visibility_unknown_and_not_yours_answer_the_same(world: World) -> None:
    service, _clock, _ = world
    grant = ask(service)
    for arn in (STRANGER, OTHER_REQUESTER):
        with pytest.raises(GrantNotFoundError) as caught:
            service.act(who(arn), grant["id"], "revoke", "r")
        assert (caught.value.status, caught.value.caller_message) == (404, "no such grant")
        assert service.listing(who(arn), "r") == {"grants": []}
    with pytest.raises(GrantNotFoundError):
        service.act(who(APPROVER), "g-00000000000000000000", "approve", "r")
    with pytest.raises(GrantNotFoundError):
        service.act(who(APPROVER), "../../etc", "approve", "r")
    # the requester sees its own, but may never approve it
    with pytest.raises(OwnGrantError):
        service.act(who(REQUESTER), grant["id"], "approve", "r")
    assert [g["id"] for g in service.listing(who(REQUESTER), "r")["grants"]] == [grant["id"]]
    assert [g["id"] for g in service.listing(who(APPROVER), "r")["grants"]] == [grant["id"]]
    service.act(who(APPROVER), grant["id"], "approve", "r")
    assert service.listing(who(APPROVER), "r") == {"grants": []}  # decided: no longer pending


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "duration over the maximum": ({"duration_seconds": 7201}, "more than the maximum of 7200 seconds"),
    "duration zero": ({"duration_seconds": 0}, "'duration_seconds' must be between 1 and"),
    "duration negative": ({"duration_seconds": -5}, "'duration_seconds' must be between 1 and"),
    "duration a string": ({"duration_seconds": "2h"}, "'duration_seconds' must be a whole number"),
    "duration a boolean": ({"duration_seconds": True}, "'duration_seconds' must be a whole number"),
    "reason missing": ({"reason": None}, "missing field 'reason'"),
    "reason blank": ({"reason": "   "}, "'reason' must be a non-empty string"),
    "reason over 1 KB": ({"reason": "x" * 1025}, "'reason' is longer than 1024 bytes"),
    "reason with a newline": ({"reason": "a\nb"}, "'reason' holds control characters"),
    "unknown field": ({"until": "tomorrow"}, "unknown field 'until'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_name_the_field(world: World, case: str) -> None:
    service, _clock, _ = world
    change, expected = BAD[case]
    body = {k: v for k, v in {**ASK, **change}.items() if v is not None}
    with pytest.raises(InvalidRequestError) as caught:
        service.request(who(REQUESTER), body, "r")
    assert expected in str(caught.value)


def test_reason_of_exactly_1_kb_is_accepted(world: World) -> None:
    service, _clock, _ = world
    assert ask(service, reason="é" * 512)["state"] == "pending"


def test_requests_outside_a_grant_rule_are_refused(world: World) -> None:
    service, _clock, _ = world
    with pytest.raises(ForbiddenError):
        ask(service, arn=STRANGER)
    with pytest.raises(InvalidRequestError, match="needs no grant"):
        ask(service, arn="arn:aws:iam::111122223333:role/orders-api-prod", db_user="orders_app")


def test_sweep_writes_expiry_once_and_ends_sessions_when_no_grant_is_left(world: World) -> None:
    service, clock, sessions = world
    mine = ask(service)
    theirs = ask(service, arn=OTHER_REQUESTER, duration_seconds=3600)
    service.act(who(APPROVER), mine["id"], "approve", "r")
    service.act(who(APPROVER), theirs["id"], "approve", "r")
    sessions.open["orders-prod/orders_owner"] = ["101", "102"]
    clock.advance(1800)
    first = service.sweep("run-1")
    assert first.expired == [mine["id"]]
    assert first.ended == {}  # bob's grant still lives: the db user's sessions stay
    clock.advance(1800)
    second = service.sweep("run-2")
    assert second.expired == [theirs["id"]]
    assert second.ended == {"orders-prod/orders_owner": ["101", "102"]}
    assert stored(service, mine["id"]).state == "expired"
    assert service.sweep("run-3").expired == []


def test_revoke_ends_the_sessions_at_once(world: World) -> None:
    service, _clock, sessions = world
    grant = ask(service)
    service.act(who(APPROVER), grant["id"], "approve", "r")
    sessions.open["orders-prod/orders_owner"] = ["77"]
    service.act(who(APPROVER), grant["id"], "revoke", "r")
    assert sessions.open == {} and sessions.calls == ["orders-prod/orders_owner"]


def test_a_revoke_whose_sessions_cannot_be_ended_now_stands_and_the_sweep_ends_them(
    world: World,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chalicelib.grants.sessions import SessionsUnavailableError

    service, _clock, sessions = world
    grant = ask(service)
    service.act(who(APPROVER), grant["id"], "approve", "r")
    sessions.open["orders-prod/orders_owner"] = ["88"]
    # the database is unreachable at the moment of the revoke
    sessions.failure = SessionsUnavailableError("cannot end sessions on 'orders-prod': timeout: timed out")
    assert service.act(who(REQUESTER), grant["id"], "revoke", "r")["state"] == "revoked"
    assert "grant_sessions_not_ended" in capsys.readouterr().out
    assert service.live_grant(REQUESTER, "orders-prod", "orders_owner") is None
    sessions.failure = None
    assert service.sweep("next-canary-run").ended == {"orders-prod/orders_owner": ["88"]}


class AnswerLost:
    """A client whose writes reach DynamoDB but whose first answer is lost: botocore sends the
    same call again (what its retries do), and that second answer is the one returned."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        call: Callable[..., Any] = getattr(self._client, name)
        if name not in ("put_item", "update_item"):
            return call

        def twice(**kwargs: Any) -> Any:
            call(**kwargs)
            return call(**kwargs)

        return twice


def test_a_retried_write_whose_first_attempt_landed_is_success_not_a_conflict(world: World) -> None:
    service, clock, _ = world
    clock.advance(0.25)  # stored times are whole seconds; the clock's are not
    service.store._client = AnswerLost(service.store._client)
    grant = ask(service)
    assert stored(service, grant["id"]).state == "pending"
    assert service.act(who(APPROVER), grant["id"], "approve", "r")["state"] == "approved"
    assert service.act(who(REQUESTER), grant["id"], "revoke", "r")["state"] == "revoked"
    # a second, deliberate decision is still refused: only a retry of one's own write is absorbed
    with pytest.raises(GrantConflictError):
        service.act(who(APPROVER), grant["id"], "approve", "r")


def test_a_missing_table_is_upstream_unavailable_not_a_crash(world: World) -> None:
    service, _clock, _ = world
    service.store.table = "no-such-table"
    with pytest.raises(UpstreamUnavailableError) as caught:
        ask(service)
    assert caught.value.status == 503 and caught.value.service == "dynamodb"
