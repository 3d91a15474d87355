"""The canary's verdict model: worst-status logic, report shape, summary counts."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.canary.model import (
    CHECK_ORDER,
    IAM_CHECKS,
    KERBEROS_CHECKS,
    CheckResult,
    Report,
    Status,
    TargetReport,
    worst,
)
from tests.support.examples import examples

RANK = {"skip": 0, "pass": 1, "warn": 2, "fail": 3, "error": 4}


def test_worst_orders_error_over_fail_over_warn_over_pass() -> None:
    assert worst(["pass", "warn"]) == "warn"
    assert worst(["warn", "fail", "pass"]) == "fail"
    assert worst(["fail", "error"]) == "error"
    assert worst(["pass", "skip"]) == "pass"


def test_nothing_proved_is_an_error_not_a_pass() -> None:
    assert worst([]) == "error"
    assert worst(["skip", "skip"]) == "error"


@settings(max_examples=examples(200))
@given(st.lists(st.sampled_from(["pass", "warn", "fail", "error", "skip"]), min_size=1))
def test_worst_is_the_maximum_and_never_pass_when_something_failed(statuses: list[Status]) -> None:
    result = worst(statuses)
    if set(statuses) == {"skip"}:
        assert result == "error"
    else:
        assert RANK[result] == max(RANK[s] for s in statuses)
    if {"fail", "error"} & set(statuses):
        assert result in ("fail", "error")


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        CheckResult("rds.found", "ok", "fine")  # type: ignore[arg-type]  # a wrong status on purpose


def test_check_sets_cover_spec_ids() -> None:
    from chalicelib.canary import model

    every = [ids for name, ids in vars(model).items() if name.endswith("_CHECKS")]
    assert set().union(*every) == set(CHECK_ORDER)
    assert "db.rds_iam" not in KERBEROS_CHECKS and "db.rds_ad" not in IAM_CHECKS


def test_report_shape_and_summary() -> None:
    at = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    ok = TargetReport("orders", "app", (CheckResult("rds.found", "pass", "ok"),))
    bad = TargetReport("orders", "owner", (CheckResult("rds.found", "pass", "ok"),
                                           CheckResult("db.tier", "fail", "superuser", "fix it",
                                                       {"role": "owner"})))
    report = Report(at, at, (ok, bad))
    body = report.to_dict()
    assert body["started_at"] == "2026-11-22T10:00:00.000Z"
    assert body["summary"] == {"targets": 2, "pass": 1, "warn": 0, "fail": 1, "error": 0}
    assert body["targets"][1]["status"] == "fail"
    assert body["targets"][1]["checks"][1] == {"id": "db.tier", "status": "fail", "message": "superuser",
                                               "fix": "fix it", "details": {"role": "owner"}}
    assert not report.ok
    assert Report(at, at, (ok,)).ok
