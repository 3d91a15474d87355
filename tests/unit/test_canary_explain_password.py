"""The doctor's words for a password user's checks, and the auth-refusal-only paragraphs of
Aurora DSQL: each branch says what an operator would search for."""
from __future__ import annotations

from chalicelib.canary.explain import explain_check
from chalicelib.canary.model import CheckResult, TargetReport, failed, passed, warned


def _said(check: CheckResult, *others: CheckResult) -> str:
    return " ".join(explain_check(check, TargetReport("orders", "ledger_batch", (*others, check), "password")).split())


def test_a_missing_secret_says_where_the_password_lives() -> None:
    assert "lives in its Secrets Manager secret" in _said(failed("secret.found", "no secret", "create it"))


def test_rotation_off_and_rotations_failing_are_told_apart() -> None:
    off = _said(failed("secret.rotation", "not rotated", "attach", rotation_enabled=False))
    late = _said(warned("secret.rotation", "late", "look at the log", rotation_enabled=True))
    assert "does not rotate this secret" in off and "rotations have been failing" not in off
    assert "rotations have been failing" in late and "does not rotate" not in late


def test_a_refused_password_is_explained_only_for_an_authentication_refusal() -> None:
    refused = _said(failed("db.password_login", "refused", "rotate", error_kind="auth", user="ledger_batch_clone"))
    assert "refused AWSCURRENT's password for ledger_batch_clone" in refused
    tls = _said(failed("db.password_login", "tls", "fix the CA", error_kind="tls"))
    assert "AWSCURRENT" not in tls and "Fix: fix the CA" in tls


def test_an_iam_user_with_a_password_is_said_per_engine() -> None:
    mysql = _said(failed("db.not_iam", "iam plugin", "alter user", plugins=[]))
    postgres = _said(failed("db.not_iam", "in rds_iam", "revoke"))
    assert "AWSAuthenticationPlugin" in mysql and "rds_iam" not in mysql
    assert "member of rds_iam" in postgres and "AWSAuthenticationPlugin" not in postgres


def test_dsql_paragraphs_follow_the_status_and_the_refusal() -> None:
    cluster = passed("dsql.found", "ACTIVE")
    creating = _said(failed("dsql.found", "not active", "wait", status="CREATING"), cluster)
    gone = _said(failed("dsql.found", "no cluster", "fix the id"), cluster)
    assert "as 'CREATING'" in creating and "no cluster by the id" in gone
    refused = _said(failed("db.connect", "refused", "grant", error_kind="auth"), cluster)
    timeout = _said(failed("db.connect", "timeout", "network", error_kind="timeout"), cluster)
    assert "SQLSTATE 28000" in refused and "DSQL answered" not in timeout
