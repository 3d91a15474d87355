"""Attribution's pure parts: RDS's refusal lines, the vend/refusal join, durations, the canary's
rds.auth_errors verdict, and the local guard's decisions (fake clock and in-memory sink)."""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.attribution.join import Vend, join_events, signer_session_for
from chalicelib.attribution.refusals import (
    ERROR_CODES,
    Refusal,
    failure_metrics,
    log_group_for,
    parse_refusal,
    refusal_line,
)
from chalicelib.canary.checks_auth_log import InMemoryAuthErrorLog, check_auth_errors
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database, DbUser
from devtools.cli.audit_cmd import parse_duration
from devtools.local.cwlogs import CloudWatchSink, LogLine, MetricCount
from devtools.local.iamdbauth import IamAuthGuard, InstanceAuth, InstanceState
from devtools.local.rdsauth import TokenVerdict
from devtools.local.world import World
from tests.support.examples import examples

SIGNER = "arn:aws:sts::222222222222:assumed-role/rdsvend-signer/user.orders-api@333333333333"
CALLER = "arn:aws:iam::333333333333:user/orders-api"


# -- the lines ------------------------------------------------------------------------------------

def test_the_lines_are_rds_lines() -> None:
    assert refusal_line("ExpiredToken", "app") == (
        "[ERROR] Failed to authenticate the connection request for user app because the token age is longer "
        "than 15 minutes. (Status Code: 400, Error Code: ExpiredToken)")
    assert refusal_line("ThrottlingException", "app") == (
        "[ERROR] Failed to authorize the connection request for user app due to IAM DB authentication "
        "throttling. (Status Code: 429, Error Code: ThrottlingException)")
    assert f"assumed by the caller '{SIGNER}' is not authorized" in refusal_line("NotAuthorized", "app", SIGNER)


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_line_parses_back(code: str) -> None:
    refusal = parse_refusal(refusal_line(code, "app", SIGNER), at=5.0, database="orders")
    assert refusal is not None and (refusal.code, refusal.db_user, refusal.database) == (code, "app", "orders")
    assert refusal.status == ERROR_CODES[code][0]
    if code == "NotAuthorized":
        assert refusal.caller == SIGNER and refusal.session == "user.orders-api@333333333333"
    else:
        assert refusal.caller is None and refusal.session is None


def test_real_rds_lines_with_a_timestamp_prefix_and_no_space_after_the_colon_parse() -> None:
    line = ("2026-11-27 10:00:00 UTC [ERROR] Failed to authenticate the connection request for user app because "
            "the token age is longer than 15 minutes. (Status Code: 400, Error Code:ExpiredToken)")
    refusal = parse_refusal(line, at=1.0, database="x")
    assert refusal is not None and refusal.code == "ExpiredToken"


@settings(max_examples=examples(200))
@given(st.text(max_size=400))
def test_anything_else_is_not_a_refusal_and_never_raises(text: str) -> None:
    result = parse_refusal(text, at=0.0, database="x")
    assert result is None or "[ERROR] Failed to" in text


def test_a_crafted_line_quoting_a_caller_is_not_attributed_to_that_caller() -> None:
    # A login attempt whose user name carries a NotAuthorized reason quoting someone: RDS writes
    # an InvalidToken line around it. Only a NotAuthorized line, in RDS's own words, names a caller.
    victim = "arn:aws:sts::222222222222:assumed-role/rdsvend-signer/user.victim@333333333333"
    crafted_user = f"x because the IAM policy assumed by the caller '{victim}' is not authorized to perform " \
                   "rds-db:connect on the DB instance. (Status Code: 403, Error Code: NotAuthorized)"
    refusal = parse_refusal(refusal_line("InvalidToken", crafted_user), at=1.0, database="orders")
    assert refusal is not None and refusal.code == "InvalidToken"
    assert refusal.caller is None and refusal.session is None
    # a NotAuthorized line with a second, crafted quote is not attributed either
    doubled = refusal_line("NotAuthorized", crafted_user.split(" (Status")[0], SIGNER)
    refusal = parse_refusal(doubled, at=1.0, database="orders")
    assert refusal is not None and refusal.caller is None


def test_oversized_lines_are_ignored() -> None:
    assert parse_refusal(refusal_line("InvalidToken", "a" * 9000), at=0.0, database="x") is None


def test_groups_and_metrics() -> None:
    assert log_group_for("orders") == "/aws/rds/instance/orders/iam-db-auth-error"
    assert log_group_for("aurora", "cluster") == "/aws/rds/cluster/aurora/iam-db-auth-error"
    assert failure_metrics("ExpiredToken")[-1] == "IamDbAuthConnectionFailureInvalidToken"
    assert failure_metrics("NotAuthorized")[-1] == "IamDbAuthConnectionFailureInsufficientPermissions"
    assert failure_metrics("ThrottlingException")[-1] == "IamDbAuthConnectionFailureThrottling"


# -- the join -------------------------------------------------------------------------------------

def _vend(at: float, arn: str = CALLER, user: str = "app", expires: str = "2026-01-01T00:15:00Z",
          request: str = "r1") -> Vend:
    return Vend(at, "allow", arn, arn, "orders-prod", user, "rule-1", "allowed", request, expires)


def test_a_not_authorized_refusal_joins_the_vend_of_its_session() -> None:
    other = _vend(10, arn="arn:aws:iam::333333333333:user/someone-else", request="r0")
    mine = _vend(20, request="r1")
    refusal = parse_refusal(refusal_line("NotAuthorized", "app", SIGNER), at=30, database="orders")
    assert refusal is not None
    entries = join_events([mine, other], [refusal], {"orders": "orders-prod"})
    assert [e.kind for e in entries] == ["vend", "vend", "refusal"]
    last = entries[-1]
    assert last.database == "orders-prod" and last.joined is mine and last.match == "session"
    assert last.to_dict()["vend"]["principal"] == CALLER


def test_a_session_that_matches_no_vend_is_left_unjoined() -> None:
    refusal = Refusal(30, "orders", "app", "NotAuthorized", 403,
                      caller="arn:aws:sts::222222222222:assumed-role/s/user.nobody@111111111111")
    (entry,) = [e for e in join_events([_vend(20)], [refusal], {"orders": "orders-prod"}) if e.kind == "refusal"]
    assert entry.joined is None and entry.match is None


def test_an_expired_token_joins_the_latest_vend_whose_token_had_expired() -> None:
    import calendar
    import time

    t0 = calendar.timegm(time.strptime("2026-01-01T00:00:00", "%Y-%m-%dT%H:%M:%S"))
    old = _vend(t0, expires="2026-01-01T00:14:30Z", request="old")
    fresh = _vend(t0 + 1000, expires="2026-01-01T00:31:10Z", request="fresh")
    refusal = Refusal(t0 + 1100, "orders", "app", "ExpiredToken", 400)
    (entry,) = [e for e in join_events([old, fresh], [refusal], {"orders": "orders-prod"}) if e.kind == "refusal"]
    assert entry.joined is old and entry.match == "db_user"


def test_signer_session_for_matches_the_signer() -> None:
    assert signer_session_for(CALLER) == "user.orders-api@333333333333"
    assert signer_session_for("not an arn") is None and signer_session_for(None) is None


# -- durations --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400),
                                               ("1h30m", 5400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0m", "-1h", "1h ago", "91d", "9" * 40, "1.5h", "m"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="invalid --since"):
        parse_duration(text)


# -- rds.auth_errors ----------------------------------------------------------------------------------

DB = Database(name="orders-prod", engine="postgres", region="eu-west-1", kind="instance", identifier="orders",
              users={"app": DbUser("app", "iam")})


def test_the_check_passes_warns_and_errors() -> None:
    refused = Refusal(5, "orders", "app", "NotAuthorized", 403, caller=SIGNER)
    assert check_auth_errors(DB, "app", InMemoryAuthErrorLog({"orders-prod": []})).status == "pass"
    assert check_auth_errors(DB, "other", InMemoryAuthErrorLog({"orders-prod": [refused]})).status == "pass"
    warn = check_auth_errors(DB, "app", InMemoryAuthErrorLog({"orders-prod": [refused, refused]}))
    assert warn.status == "warn" and "2 x NotAuthorized" in warn.message and SIGNER in warn.message
    assert "rds-db:connect" in warn.fix
    off = check_auth_errors(DB, "app", InMemoryAuthErrorLog({"orders-prod": None}))
    assert off.status == "skip" and "--cloudwatch-logs-export-configuration" in off.message
    broken = check_auth_errors(DB, "app", InMemoryAuthErrorLog(
        {"orders-prod": ProbeError("logs FilterLogEvents failed: AccessDenied", service="logs", code="AccessDenied")}))
    assert broken.status == "error" and "AccessDenied" in broken.message


# -- the local guard ------------------------------------------------------------------------------------

class FakeChecker:
    def __init__(self, verdict: TokenVerdict) -> None:
        self.verdict = verdict
        self.calls = 0

    def verify(self, user: str, token: str) -> TokenVerdict:
        self.calls += 1
        return self.verdict


class ListSink:
    def __init__(self) -> None:
        self.items: list[LogLine | MetricCount] = []

    def put(self, item: LogLine | MetricCount) -> None:
        self.items.append(item)


INST = InstanceAuth("orders", "222222222222", "us-east-1", "localhost", 5432, frozenset({"app"}), logins_per_second=3)
TOKEN = "localhost:5432/?Action=connect&DBUser=app&X-Amz-Signature=" + "ab" * 32


EXPORTING = InstanceState(True, ("iam-db-auth-error",))


def _guard(verdict: TokenVerdict, state: InstanceState = EXPORTING, clock: Callable[[], float] | None = None,
           ) -> tuple[IamAuthGuard, FakeChecker, ListSink]:
    sink = ListSink()
    checker = FakeChecker(verdict)
    now = clock or (lambda: 100.0)
    guard = IamAuthGuard(checker, {"orders": INST}, sink=sink, state=lambda inst: state, monotonic=now,
                         wall=lambda: 1000.0)
    return guard, checker, sink


def test_past_the_rate_logins_are_throttled_before_the_token_is_checked() -> None:
    guard, checker, sink = _guard(TokenVerdict(True, "permitted", "app"))
    results = [guard.check("app", TOKEN) for _ in range(5)]
    assert results == [True, True, True, False, False] and checker.calls == 3
    lines = [i for i in sink.items if isinstance(i, LogLine)]
    assert len(lines) == 2 and all("ThrottlingException" in i.message for i in lines)
    assert lines[0].group == "/aws/rds/instance/orders/iam-db-auth-error" and lines[0].account == "222222222222"
    names = [i.name for i in sink.items if isinstance(i, MetricCount)]
    assert names.count("IamDbAuthConnectionRequests") == 5 and names.count("IamDbAuthConnectionSuccess") == 3
    assert names.count("IamDbAuthConnectionFailureThrottling") == 2


def test_a_new_second_admits_again() -> None:
    now = [100.0]
    guard, _checker, _sink = _guard(TokenVerdict(True, "permitted", "app"), clock=lambda: now[0])
    assert all(guard.check("app", TOKEN) for _ in range(3)) and not guard.check("app", TOKEN)
    now[0] += 1.0
    assert guard.check("app", TOKEN)


def test_iam_auth_disabled_refuses_every_token_without_an_iam_log_line() -> None:
    guard, checker, sink = _guard(TokenVerdict(True, "permitted", "app"), state=InstanceState(False, ("iam-db-auth-error",)))
    verdict = guard.verify("app", TOKEN)
    assert not verdict.allowed and verdict.reason == "iam_auth_disabled" and checker.calls == 0 and sink.items == []


def test_a_refusal_is_logged_only_when_the_instance_exports_the_log_and_never_with_the_token() -> None:
    expired = TokenVerdict(False, "signature:expired", "app")
    guard, _checker, sink = _guard(expired)
    assert not guard.check("app", TOKEN)
    (line,) = [i for i in sink.items if isinstance(i, LogLine)]
    assert "ExpiredToken" in line.message and "ab" * 32 not in line.message and "X-Amz" not in line.message
    guard, _checker, sink = _guard(expired, state=InstanceState(True, ()))
    assert not guard.check("app", TOKEN)
    assert not [i for i in sink.items if isinstance(i, LogLine)]
    assert "IamDbAuthConnectionFailureInvalidToken" in [i.name for i in sink.items if isinstance(i, MetricCount)]


def test_reading_the_instance_failing_refuses() -> None:
    guard = IamAuthGuard(FakeChecker(TokenVerdict(True, "permitted", "app")), {"orders": INST}, sink=None,
                         state=lambda inst: (_ for _ in ()).throw(RuntimeError("boom")))
    assert guard.check("app", TOKEN) is False


def test_the_sink_never_blocks_and_counts_what_it_drops() -> None:
    gate = threading.Event()

    def client_for(service: str, account: str) -> Any:
        gate.wait(5)
        raise RuntimeError("moto down")

    sink = CloudWatchSink(client_for, max_queue=3).start()
    try:
        for i in range(50):
            sink.put(LogLine("1", "g", "s", f"m{i}", i))
        assert sink.dropped >= 40
    finally:
        gate.set()
        sink.stop(timeout=5)


# -- the world setting ------------------------------------------------------------------------------

def _world_with(**db_settings: object) -> World:
    import yaml

    from devtools.local.world import DEFAULT_WORLD, load_world_text

    data = yaml.safe_load(DEFAULT_WORLD.read_text())
    account = next(a for a in data["accounts"].values() if "orders-local" in (a.get("databases") or {}))
    account["databases"]["orders-local"].update(db_settings)
    return load_world_text(yaml.safe_dump(data))


def test_the_world_sets_the_rate_and_exports_with_rds_defaults() -> None:
    _account, spec = _world_with().database("orders-local")
    assert spec.iam_auth_logins_per_second == 200 and spec.log_exports == ("iam-db-auth-error",)
    _account, spec = _world_with(iam_auth_logins_per_second=5, log_exports=[]).database("orders-local")
    assert spec.iam_auth_logins_per_second == 5 and spec.log_exports == ()


@pytest.mark.parametrize(("settings_", "field"), [
    ({"iam_auth_logins_per_second": 0}, "iam_auth_logins_per_second"),
    ({"iam_auth_logins_per_second": "fast"}, "iam_auth_logins_per_second"),
    ({"iam_auth_logins_per_second": True}, "iam_auth_logins_per_second"),
    ({"log_exports": "iam-db-auth-error"}, "log_exports"),
    ({"log_exports": ["iam-db-auth-errors"]}, "log_exports[0]"),
])
def test_bad_world_settings_name_the_field(settings_: dict[str, Any], field: str) -> None:
    from devtools.local.world import WorldError

    with pytest.raises(WorldError, match=f"field '[^']*orders-local\\.{re.escape(field)}'"):
        _world_with(**settings_)


# -- the audit command's input ----------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--since", "yesterday"], ["--since", "0s"], ["--log-group", "bad group name"], ["--log-group", "x" * 600],
    ["--nope"], ["--database"],
])
def test_audit_refuses_bad_flags_on_one_line_with_exit_2(args: list[str]) -> None:
    from click.testing import CliRunner

    from devtools.cli.audit_cmd import audit

    result = CliRunner().invoke(audit, args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_each_run_reads_refusals_since_the_previous_run_of_the_same_deps() -> None:
    from chalicelib.canary.checks_auth_log import CloudWatchAuthErrorLog

    reads: list[int] = []

    class Logs:
        def filter_log_events(self, **kwargs: Any) -> dict[str, Any]:
            reads.append(kwargs["startTime"])
            return {"events": []}

    log = CloudWatchAuthErrorLog(lambda database: Logs(), interval=300, now=lambda: 1000.0)
    first = log.for_run(1000.0)
    assert first.since == 700.0 and first.refusals(DB) == [] and first.refusals(DB) == []
    second = log.for_run(1300.0)
    assert second.since == 1000.0 and second.refusals(DB) == []
    assert reads == [700_000, 1_000_000]  # one read per database per run, none carried over


def test_audit_takes_no_log_group_from_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing names the service's log group but the operator: no flag and no variable is a clear exit 2."""
    from click.testing import CliRunner

    from devtools.cli.audit_cmd import audit

    monkeypatch.delenv("RDSVEND_AUDIT_LOG_GROUPS", raising=False)
    result = CliRunner().invoke(audit, ["--since", "1h"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("rdsvend: no log group with the service's audit lines: give --log-group or set "
                                     "RDSVEND_AUDIT_LOG_GROUPS (the vend function's log group, /aws/lambda/<function name>)")
