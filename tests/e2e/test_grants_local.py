"""Just-in-time access on the local stack (real PostgreSQL and MariaDB, moto server, the SigV4
gateway): the demo's story for each engine family, with the session ended by the canary's
run after the grant's end, and a revoked grant ending its session at once."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from devtools.local.demo_grants import GrantStory, run_canary_sweep, session_alive
from devtools.local.stack import LocalStack

pytestmark = pytest.mark.e2e


def _when(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_the_story_ends_the_session_within_one_canary_run(local_stack: LocalStack, engine: str) -> None:
    story = GrantStory(local_stack, engine)
    database, db_user = story.target
    status, body = story.token()
    assert (status, body["error"]["code"]) == (403, "forbidden")
    grant = story.ask(6, f"e2e {engine}")
    assert grant["state"] == "pending"
    status, listed = story.call("GET", "/v1/grants", caller="approver")
    assert grant["id"] in [g["id"] for g in listed.get("grants", [])], (status, listed)
    status, own = story.decide(grant["id"], "approve", caller="allowed")
    assert (status, own["error"]["code"]) == (403, "forbidden")  # never one's own approver
    status, approved = story.decide(grant["id"], "approve")
    assert (status, approved.get("state")) == (200, "approved"), approved
    vended, conn = story.login()
    try:
        assert vended.expires_at == _when(approved["ends_at"])  # the token ends with the grant
        assert session_alive(conn)
        time.sleep(max(0.0, (_when(approved["ends_at"]) - datetime.now(UTC)).total_seconds()) + 1)
        status, _ = story.token()
        assert status == 403  # the grant ended: no new token
        report = run_canary_sweep(local_stack.info)
        assert report is not None, "the canary swept no grants table"
        assert grant["id"] in report["expired"]
        assert report["problems"] == []
        assert report["sessions_ended"].get(f"{database}/{db_user}"), report
        assert not session_alive(conn)
    finally:
        conn.close()
    status, listed = story.call("GET", "/v1/grants")
    (mine,) = [g for g in listed["grants"] if g["id"] == grant["id"]]
    assert mine["state"] == "expired"


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_a_revoked_grant_ends_its_session_at_once(local_stack: LocalStack, engine: str) -> None:
    story = GrantStory(local_stack, engine)
    grant = story.ask(600, f"e2e revoke {engine}")
    story.decide(grant["id"], "approve")
    _vended, conn = story.login()
    try:
        assert session_alive(conn)
        status, revoked = story.decide(grant["id"], "revoke", caller="allowed")
        assert (status, revoked["state"]) == (200, "revoked")
        assert not session_alive(conn)  # ended by the revoke itself, no canary run in between
        status, _ = story.token()
        assert status == 403
    finally:
        conn.close()
