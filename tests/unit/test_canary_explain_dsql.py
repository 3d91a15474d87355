"""``rdsvend doctor`` explains an Aurora DSQL target in the words it uses for RDS, with DSQL's
action, resource and refusal, and names the stale mapping."""
from __future__ import annotations

from chalicelib.canary.checks_iam import ConnectFacts, SideVerdict, check_signer_allows
from chalicelib.canary.explain import explain_target
from chalicelib.canary.model import TargetReport, failed, passed
from chalicelib.canary.target_dsql import check_role_mapping, in_dsql_words

ARN = "arn:aws:dsql:us-east-1:111122223333:cluster/abcdefghijklmnopqrstuvwxyz"
ROLE = "arn:aws:iam::111122223333:role/ledger-signer"


def _report(*checks: object) -> TargetReport:
    return TargetReport("ledger", "app_rw", tuple(checks))  # type: ignore[arg-type]  # each sample is a CheckResult


def test_denied_signer_is_said_with_dsqls_action_and_refusal() -> None:
    facts = ConnectFacts(ROLE, ARN, SideVerdict(False, "implicitDeny", "identity"), None)
    signer = in_dsql_words(check_signer_allows(facts, principal=ROLE, dbuser_arn=ARN), "dsql:DbConnect")
    assert signer.message == f"no identity policy of {ROLE} allows dsql:DbConnect on {ARN}"
    assert "rds-db" not in signer.fix and "cluster ARN" in signer.fix
    text = explain_target(_report(passed("dsql.found", "ACTIVE"), signer))
    assert "dsql:DbConnect" in text and "SQLSTATE 28000" in text
    assert "rds-db:connect" not in text and "PAM authentication failed" not in text


def test_a_recreated_role_is_named_with_the_grant_to_run() -> None:
    mapping = check_role_mapping("app_rw", ROLE, mapped=[ROLE], login_refused=True, iam_allows=True)
    assert mapping.status == "fail" and "deleted or recreated role" in mapping.message
    assert mapping.fix.endswith(f"AWS IAM GRANT app_rw TO '{ROLE}'")
    connect = failed("db.connect", "could not connect", "see dsql.role_mapping", error_kind="auth")
    text = explain_target(_report(passed("dsql.found", "ACTIVE"), connect, mapping))
    assert "new unique id" in text and "AWS IAM GRANT" in text and "SQLSTATE 28000" in text


def test_mapping_checks_for_each_case() -> None:
    assert check_role_mapping("r", ROLE, mapped=[], login_refused=True, iam_allows=True).fix == \
        f"as admin, run: AWS IAM GRANT r TO '{ROLE}'"
    assert check_role_mapping("r", ROLE, mapped=[ROLE], login_refused=False, iam_allows=True).status == "pass"
    unknown = check_role_mapping("r", ROLE, mapped=None, login_refused=True, iam_allows=True)
    assert unknown.status == "fail" and "deleted or recreated" in unknown.message
    blocked = check_role_mapping("r", ROLE, mapped=None, login_refused=True, iam_allows=False, reason="x")
    assert blocked.status == "error"  # never a pass when it could not be read
