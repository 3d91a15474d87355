"""Setup not finished yet (no organization reader role, no network path) is the canary's own
status with the step to take, not a failing target: CanaryCheckFailed, which the
failing-target alarm watches, counts only real failures."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.canary.emit import emit_metrics, log_report
from chalicelib.canary.model import CheckResult, Report, TargetReport, errored, failed, passed
from chalicelib.canary.setup import NETWORK_STEP, ORG_READER_STEP, pending_step

AT = datetime(2026, 12, 3, tzinfo=UTC)
ORG_DENIED = errored("org.scp_allows", "could not read the SCP chain: organizations ListPoliciesForTarget: "
                     "AccessDeniedException", cause="organizations ListPoliciesForTarget: AccessDeniedException: "
                     "You don't have permissions to access this resource.")
ORG_THROTTLED = errored("org.scp_allows", "could not read the SCP chain: TooManyRequestsException",
                        cause="organizations ListParents: TooManyRequestsException")
CONNECT_TIMEOUT = errored("db.connect", "could not connect: timeout expired", error_kind="timeout")
CONNECT_REFUSED_LOGIN = failed("db.connect", "PAM authentication failed for user orders_app", "grant rds_iam",
                               error_kind="auth")


def _metrics(report: Report, monkeypatch: pytest.MonkeyPatch, network: str | None) -> dict[str, float]:
    if network is None:
        monkeypatch.delenv("RDSVEND_CANARY_NETWORK", raising=False)
    else:
        monkeypatch.setenv("RDSVEND_CANARY_NETWORK", network)
    out = io.StringIO()
    with redirect_stdout(out):
        emit_metrics(report)
    (line,) = [json.loads(x) for x in out.getvalue().splitlines() if '"_aws"' in x]
    values = {name: line.get(name, 0) for name in ("CanaryCheckFailed", "CanarySetupPending")}
    return {name: value[0] if isinstance(value, list) else value for name, value in values.items()}


def _report(*checks: CheckResult) -> Report:
    return Report(AT, AT, (TargetReport("orders-prod", "orders_app", (passed("rds.found", "found"), *checks)),))


def test_a_first_deploy_without_org_reader_or_network_path_is_setup_pending_not_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = _metrics(_report(ORG_DENIED, CONNECT_TIMEOUT), monkeypatch, "none")
    assert metrics == {"CanaryCheckFailed": 0, "CanarySetupPending": 2}


def test_a_connect_timeout_with_a_network_path_is_a_real_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = _metrics(_report(ORG_DENIED, CONNECT_TIMEOUT), monkeypatch, "vpc")
    assert metrics == {"CanaryCheckFailed": 1, "CanarySetupPending": 1}
    # unknown (not deployed by the stack): never assumed to be setup
    assert _metrics(_report(CONNECT_TIMEOUT), monkeypatch, None) == {"CanaryCheckFailed": 1,
                                                                     "CanarySetupPending": 0}


@pytest.mark.parametrize("check", [ORG_THROTTLED, CONNECT_REFUSED_LOGIN])
def test_other_errors_and_failures_still_count_as_failing(monkeypatch: pytest.MonkeyPatch, check: CheckResult) -> None:
    assert _metrics(_report(check), monkeypatch, "none") == {"CanaryCheckFailed": 1, "CanarySetupPending": 0}


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, line: dict[str, Any]) -> None:
        self.lines.append(("info", line))

    def warning(self, line: dict[str, Any]) -> None:
        self.lines.append(("warning", line))

    def error(self, line: dict[str, Any]) -> None:
        self.lines.append(("error", line))


def test_the_log_names_the_step_to_take(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDSVEND_CANARY_NETWORK", "none")
    log = _Log()
    report = Report(AT, AT, (*_report(ORG_DENIED, CONNECT_TIMEOUT).targets,
                             TargetReport("billing", "billing_app", (CONNECT_REFUSED_LOGIN,))))
    log_report(report, log)
    pending = {line["check"]: line["step"] for level, line in log.lines
               if line.get("event") == "canary_setup_pending" and level == "warning"}
    assert pending == {"org.scp_allows": ORG_READER_STEP, "db.connect": NETWORK_STEP}
    assert "RDSVEND_ORG_ROLE_ARN" in ORG_READER_STEP and "subnet_ids" in NETWORK_STEP
    errors = [line for level, line in log.lines if level == "error"]
    assert [line["message"] for line in errors] == ["PAM authentication failed for user orders_app"]


def test_only_errors_are_ever_setup() -> None:
    assert pending_step(passed("org.scp_allows", "ok"), network="none") is None
    assert pending_step(failed("db.connect", "timeout", "x", error_kind="timeout"), network="none") is None
