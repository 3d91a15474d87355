"""The doctor's words and the CLI's usage errors (no AWS, no database)."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from chalicelib.canary.explain import explain_check, explain_target, render_checks, render_table
from chalicelib.canary.model import CheckResult, TargetReport
from devtools.cli.main import cli

ARN = "arn:aws:rds-db:us-east-1:222222222222:dbuser:db-ABCDEFGHIJKL/orders_app"
BAD = "arn:aws:rds-db:us-east-1:222222222222:dbuser:orders-prod/orders_app"


def target(*checks: CheckResult) -> TargetReport:
    return TargetReport("orders", "orders_app", tuple(checks))


def test_scp_paragraph_names_policy_statement_level_and_the_pam_message() -> None:
    c = CheckResult("org.scp_allows", "fail", "SCP 'DenyRdsDb' (p-abc123) denies", "detach it",
                    {"decision": "explicitDeny", "policy": "SCP 'DenyRdsDb' (p-abc123)", "statement": "NoDb",
                     "level": "OU Services (ou-ab12-cdef3456)", "dbuser_arn": ARN})
    raw = explain_check(c, target(c))
    assert all(len(line) <= 92 for line in raw.splitlines() if " " in line.strip())
    text = " ".join(raw.split())
    assert "p-abc123" in text and "'NoDb'" in text and "OU Services (ou-ab12-cdef3456)" in text
    assert 'PAM authentication failed for user "orders_app"' in text
    assert ARN in text  # ARNs never break at hyphens
    assert "Fix: detach it" in text


def test_instance_name_paragraph_shows_the_wrong_and_the_right_arn() -> None:
    c = CheckResult("iam.signer_allows", "fail", "denied", "use the resource id",
                    {"dbuser_arn": ARN, "decision": "implicitDeny", "findings": [
                        {"kind": "instance_name_arn", "message": "x", "value": BAD}]})
    text = " ".join(explain_check(c, target(c)).split())
    assert BAD in text and ARN in text and "instance name" in text


def test_passes_and_skips_have_no_paragraph_and_errors_say_nothing_is_proved() -> None:
    ok = CheckResult("rds.found", "pass", "ok")
    skip = CheckResult("db.connect", "skip", "not attempted")
    err = CheckResult("rds.found", "error", "rds DescribeDBInstances failed: Throttling", "retry")
    assert explain_target(target(ok, skip)) == ""
    assert "nothing is proved" in explain_check(err, target(err))


def test_tables() -> None:
    t = target(CheckResult("rds.found", "pass", "ok"), CheckResult("db.tier", "fail", "superuser", "NOSUPERUSER"))
    assert "db.tier (fail)" in render_table([t])
    assert "FAIL" in render_checks(t)


def test_cli_bad_policy_is_exit_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\ndatabases: {}\nrules: []\nbogus: 1\n")
    result = CliRunner().invoke(cli, ["canary", "--policy", str(bad)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "bogus" in result.output
    missing = CliRunner().invoke(cli, ["doctor", "x", "y", "--policy", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2


def test_cli_unknown_database_or_user_is_exit_2(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("""version: 1
databases:
  orders:
    engine: postgres
    region: us-east-1
    instance: orders-prod
    users:
      orders_app: {auth: iam}
rules: []
""")
    unknown_db = CliRunner().invoke(cli, ["doctor", "billing", "orders_app", "--policy", str(policy)])
    assert unknown_db.exit_code == 2 and "unknown database 'billing'" in unknown_db.output
    unknown_user = CliRunner().invoke(cli, ["doctor", "orders", "nobody", "--policy", str(policy)])
    assert unknown_user.exit_code == 2 and "unknown db user 'nobody'" in unknown_user.output
    usage = CliRunner().invoke(cli, ["doctor", "orders"])
    assert usage.exit_code == 2


def test_libpq_messages_are_one_line_and_never_carry_the_token() -> None:
    from chalicelib.engines.base import ConnectParams
    from chalicelib.engines.postgres_catalog import classify_connect_error

    token = "orders.example.com:5432/?Action=connect&DBUser=app&X-Amz-Signature=abc123"
    err = classify_connect_error(f'connection failed: FATAL:  PAM authentication failed for user "app"\n'
                                 f"DETAIL: password was {token}", secrets=(token,))
    assert err.kind == "auth" and "\n" not in err.message and "abc123" not in err.message
    assert token not in repr(ConnectParams("h", 5432, "d", "app", token))
