"""``rdsvend grant ...`` against a real HTTP server on loopback (signed requests checked):
what each command sends, its one line or JSON, and its exit codes (0, 1 refused, 2 usage)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from rdsvend.cli import main
from rdsvend.grants import grant_line, parse_for
from tests.support.client_fakes import ACCESS_KEY, SECRET_KEY, FakeVendServer, error_reply, run_cli

GID = "g-0123456789abcdef0123"
GRANT = {"id": GID, "state": "pending", "database": "orders-prod", "db_user": "orders_owner",
         "requester": "arn:aws:iam::111122223333:user/alice", "approver": None, "reason": "INC-1 fix",
         "duration_seconds": 7200, "starts_at": None, "ends_at": None}


@pytest.fixture
def server() -> Iterator[FakeVendServer]:
    fake = FakeVendServer(responder=lambda n, seen: (200, {}, GRANT))
    yield fake
    fake.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, server: FakeVendServer) -> pytest.MonkeyPatch:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("RDSVEND_URL", server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    return monkeypatch


def test_request_sends_the_reason_and_duration_and_prints_one_line(env: pytest.MonkeyPatch,
                                                                   server: FakeVendServer) -> None:
    result = run_cli(main, "grant", "request", "orders-prod", "orders_owner", "--for", "2h", "--reason", "INC-1 fix")
    assert result.exit_code == 0, result.stderr
    (seen,) = server.seen
    assert (seen.method, seen.path, seen.signature_ok) == ("POST", "/v1/grants", True)
    assert json.loads(seen.body) == {"database": "orders-prod", "db_user": "orders_owner", "reason": "INC-1 fix",
                                     "duration_seconds": 7200}
    assert result.stdout == (f"{GID} pending  orders-prod/orders_owner requester arn:aws:iam::111122223333:user/alice "
                          "for 7200s: INC-1 fix\n")


@pytest.mark.parametrize("verb", ["approve", "deny", "revoke"])
def test_decisions_post_to_the_grant_and_json_is_the_grant(env: pytest.MonkeyPatch, server: FakeVendServer,
                                                           verb: str) -> None:
    result = run_cli(main, "grant", verb, GID, "--json")
    assert result.exit_code == 0, result.stderr
    assert server.seen[0].path == f"/v1/grants/{GID}/{verb}"
    assert json.loads(result.stdout) == GRANT


def test_list_prints_a_line_per_grant_or_says_none(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    approved = {**GRANT, "state": "approved", "approver": "arn:aws:iam::111122223333:role/dba",
                "ends_at": "2026-12-03T12:00:00Z"}
    server.responder = lambda n, seen: (200, {}, {"grants": [approved, GRANT]})
    result = run_cli(main, "grant", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].endswith("approver arn:aws:iam::111122223333:role/dba ends 2026-12-03T12:00:00Z: INC-1 fix")
    assert len(lines) == 2 and server.seen[0].method == "GET"
    server.responder = lambda n, seen: (200, {}, {"grants": []})
    assert run_cli(main, "grant", "list").stdout == "no grants\n"


@pytest.mark.parametrize("status,code,exit_code", [
    (403, "forbidden", 1), (404, "not_found", 1), (409, "conflict", 1), (400, "invalid_request", 2),
    (503, "upstream_unavailable", 1)])
def test_refusals_are_one_line_with_the_code(env: pytest.MonkeyPatch, server: FakeVendServer, status: int, code: str,
                                             exit_code: int) -> None:
    server.responder = lambda n, seen: error_reply(status, code)
    result = run_cli(main, "grant", "approve", GID)
    assert result.exit_code == exit_code
    assert result.stdout == ""
    assert result.stderr == f"rdsvend: error: {code}: {code} happened (request id req-1)\n"


@pytest.mark.parametrize("argv,expected", [
    (("grant", "request", "orders-prod", "orders_owner", "--for", "forever", "--reason", "x"), "--for"),
    (("grant", "request", "orders-prod", "orders_owner", "--for", "0s", "--reason", "x"), "between 1 second"),
    (("grant", "request", "orders-prod", "orders_owner", "--for", "8d", "--reason", "x"), "between 1 second"),
    (("grant", "request", "orders-prod", "orders_owner", "--reason", "x"), "--for"),
    (("grant", "request", "orders-prod", "orders_owner", "--for", "1h"), "--reason"),
    (("grant", "request", "orders-prod", "orders_owner", "--for", "1h", "--reason", "  "), "--reason"),
    (("grant", "approve", "../../v1/tokens"), "is not a grant id"),
    (("grant",), "ACTION"),
    (("grant", "explode"), "invalid choice"),
])
def test_bad_usage_exits_2_with_one_line_and_sends_nothing(env: pytest.MonkeyPatch, server: FakeVendServer,
                                                           argv: tuple[Any, ...], expected: str) -> None:
    result = run_cli(main, *argv)
    assert result.exit_code == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert server.seen == []


def test_no_url_is_bad_usage(env: pytest.MonkeyPatch) -> None:
    env.delenv("RDSVEND_URL")
    result = run_cli(main, "grant", "list")
    assert (result.exit_code, result.stderr) == (2, "rdsvend: error: no rdsvend URL: pass --url or set RDSVEND_URL\n")


def test_durations() -> None:
    assert [parse_for(t) for t in ("90s", "30m", "2h", "1h30m", "1d", "600")] == [90, 1800, 7200, 5400, 86400, 600]


def test_grant_line_keeps_to_one_line() -> None:
    assert "\n" not in grant_line({**GRANT, "reason": "a\nb"})
