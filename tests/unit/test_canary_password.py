"""Verdicts of the password users' checks (pure)."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.canary.checks_password import SecretView, check_secret_found, check_secret_rotation
from chalicelib.engines.secret import DbSecret
from chalicelib.errors import ProbeError
from chalicelib.policy.model import DbUser

ARN = "arn:aws:secretsmanager:us-east-1:222222222222:secret:rdsvend/orders/reports-AbCdEf"
USER = DbUser("reports", "password", "service-user", ARN[:-7], "alternating-users")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SECRET = DbSecret("postgres", "db.example", 5432, "reports_clone", "pw-1234567890", "orders",
                  masterarn="arn:aws:secretsmanager:us-east-1:222222222222:secret:master")


BASE = SecretView(arn=ARN, name="rdsvend/orders/reports", rotation_enabled=True, rotation_days=30,
                  last_rotated=NOW - timedelta(days=3), rotation_lambda=None, current=SECRET)


def view(**changes: Any) -> SecretView:
    return replace(BASE, **changes)


def test_rotation_within_interval_plus_a_day_passes_and_beyond_fails() -> None:
    assert check_secret_rotation(USER, view(last_rotated=NOW - timedelta(days=30, hours=23)), NOW).status == "pass"
    late = check_secret_rotation(USER, view(last_rotated=NOW - timedelta(days=31, hours=1)), NOW)
    assert late.status == "fail" and "31.0 days ago" in late.message and "rotate function's log" in late.fix


def test_rotation_disabled_never_rotated_or_unscheduled() -> None:
    off = check_secret_rotation(USER, view(rotation_enabled=False), NOW)
    assert off.status == "fail" and "rotate-secret --secret-id" in off.fix
    assert check_secret_rotation(USER, view(last_rotated=None), NOW).status == "fail"
    assert check_secret_rotation(USER, view(rotation_days=None), NOW).status == "warn"
    assert check_secret_rotation(USER, None, NOW).status == "skip"


def test_secret_found_verdicts_never_show_the_password() -> None:
    assert check_secret_found(USER, view()).status == "pass"
    assert check_secret_found(USER, None).status == "fail"
    assert check_secret_found(USER, ProbeError("secretsmanager DescribeSecret failed: AccessDenied")).status == "error"
    other = view(current=DbSecret("postgres", "db.example", 5432, "someone_else", "pw-1234567890"))
    assert "not reports" in check_secret_found(USER, other).message
    no_master = view(current=DbSecret("postgres", "db.example", 5432, "reports", "pw-1234567890"))
    assert "masterarn" in check_secret_found(USER, no_master).message
    for result in (check_secret_found(USER, view()), check_secret_found(USER, other)):
        assert "pw-1234567890" not in str(result.to_dict())
