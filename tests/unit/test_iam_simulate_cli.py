"""``rdsvend simulate``: options, the --json shape, exit codes 0/1/2, and one-line
errors naming the file and the problem for every kind of malformed input."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from devtools.cli.main import cli

ARN = "arn:aws:rds-db:us-east-1:111122223333:dbuser:db-ABCDEFGH/orders_app"


def _write(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _doc(*statements: dict[str, Any], version: str = "2012-10-17") -> dict[str, Any]:
    return {"Version": version, "Statement": list(statements)}


ALLOW_CONNECT = {"Sid": "Connect", "Effect": "Allow", "Action": "rds-db:connect", "Resource": "arn:aws:rds-db:*:*:dbuser:db-ABCDEFGH/*"}
ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def simulate(*args: str) -> Result:
    return CliRunner().invoke(cli, ["simulate", "--action", "rds-db:connect", "--resource", ARN, *args])


def test_allowed_json_shape_and_exit_0(tmp_path: Path) -> None:
    signer = _write(tmp_path, "signer.json", _doc(ALLOW_CONNECT))
    result = simulate("--identity-policy", signer, "--json")
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert set(body) == {"decision", "layer", "policy", "statement", "explanation"}
    assert body["decision"] == "allowed" and body["layer"] == "identity"
    assert body["policy"] == signer and body["statement"] == "Connect"


def test_implicit_deny_exit_1_and_readable_sentence(tmp_path: Path) -> None:
    other = _write(tmp_path, "other.json", _doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}))
    result = simulate("--identity-policy", other)
    assert result.exit_code == 1
    assert result.stdout.strip().endswith(".") and "implicitly denied" in result.stdout
    assert "{" not in result.stdout


def test_explicit_deny_in_scp_level_names_level_file_and_statement(tmp_path: Path) -> None:
    signer = _write(tmp_path, "signer.json", _doc(ALLOW_CONNECT))
    root = _write(tmp_path, "root.json", _doc(ALLOW_ALL))
    ou = _write(tmp_path, "ou.json", [_doc(ALLOW_ALL), _doc({"Sid": "NoDb", "Effect": "Deny", "Action": "rds-db:*", "Resource": "*"})])
    result = simulate("--identity-policy", signer, "--scp", root, "--scp", ou, "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body == {**body, "decision": "explicitDeny", "layer": "scp", "policy": f"{ou}[1]", "statement": "NoDb"}


def test_scp_level_that_allows_nothing_is_named(tmp_path: Path) -> None:
    signer = _write(tmp_path, "signer.json", _doc(ALLOW_CONNECT))
    root = _write(tmp_path, "root.json", _doc(ALLOW_ALL))
    acct = _write(tmp_path, "acct.json", _doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}))
    body = json.loads(simulate("--identity-policy", signer, "--scp", root, "--scp", acct, "--json").stdout)
    assert (body["decision"], body["layer"], body["policy"]) == ("implicitDeny", "scp", "scp level 1")
    assert "acct.json" in body["explanation"]


def test_boundary_and_session_layers(tmp_path: Path) -> None:
    signer = _write(tmp_path, "signer.json", _doc(ALLOW_ALL))
    narrow = _write(tmp_path, "narrow.json", _doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}))
    boundary = json.loads(simulate("--identity-policy", signer, "--boundary", narrow, "--json").stdout)
    session = json.loads(simulate("--identity-policy", signer, "--session-policy", narrow, "--json").stdout)
    assert (boundary["layer"], boundary["policy"]) == ("boundary", narrow)
    assert (session["layer"], session["policy"]) == ("session", narrow)


def test_management_account_flag_skips_scps(tmp_path: Path) -> None:
    signer = _write(tmp_path, "signer.json", _doc(ALLOW_CONNECT))
    deny_all = _write(tmp_path, "deny.json", _doc({"Effect": "Deny", "Action": "*", "Resource": "*"}))
    assert simulate("--identity-policy", signer, "--scp", deny_all).exit_code == 1
    assert simulate("--identity-policy", signer, "--scp", deny_all, "--management-account").exit_code == 0


def test_repeated_context_key_is_multivalued(tmp_path: Path) -> None:
    policy = _write(tmp_path, "tags.json", _doc({
        "Effect": "Allow", "Action": "rds-db:connect", "Resource": "*",
        "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}, "Null": {"aws:TagKeys": "false"}},
    }))
    ok = simulate("--identity-policy", policy, "--context", "aws:TagKeys=team", "--context", "AWS:tagkeys=env")
    bad = simulate("--identity-policy", policy, "--context", "aws:TagKeys=team", "--context", "aws:TagKeys=owner")
    assert ok.exit_code == 0 and bad.exit_code == 1


def test_context_value_may_contain_equals_and_variables_resolve(tmp_path: Path) -> None:
    policy = _write(tmp_path, "own.json", _doc({
        "Effect": "Allow", "Action": "rds-db:connect",
        "Resource": "arn:aws:rds-db:us-east-1:111122223333:dbuser:db-ABCDEFGH/${aws:PrincipalTag/dbuser}",
    }))
    assert simulate("--identity-policy", policy, "--context", "aws:PrincipalTag/dbuser=orders_app").exit_code == 0
    assert simulate("--identity-policy", policy, "--context", "aws:PrincipalTag/dbuser=a=b").exit_code == 1


BAD_DOCUMENTS = [
    ("not-json", "{\"Version\": \"2012-10-17\", ", "not valid JSON"),
    ("no-statement", {"Version": "2012-10-17"}, "missing 'Statement'"),
    ("bad-effect", _doc({"Effect": "Maybe", "Action": "*", "Resource": "*"}), "'Effect' must be"),
    ("action-and-notaction", _doc({"Effect": "Allow", "Action": "*", "NotAction": "s3:*", "Resource": "*"}), "both 'Action' and 'NotAction'"),
    ("resource-and-notresource", _doc({"Effect": "Allow", "Action": "*", "Resource": "*", "NotResource": "x"}), "both 'Resource' and 'NotResource'"),
    ("unknown-operator", _doc({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringMatches": {"a:b": "c"}}}), "unknown condition operator 'StringMatches'"),
    ("wrong-type", _doc({"Effect": "Allow", "Action": {"s3": "x"}, "Resource": "*"}), "must be a string or a list of strings"),
    ("empty-file", "", "not valid JSON"),
    ("a-list", [ALLOW_ALL], "must be a JSON object"),
]


@pytest.mark.parametrize("option", ["--identity-policy", "--boundary", "--session-policy", "--scp"])
@pytest.mark.parametrize("name, content, problem", BAD_DOCUMENTS, ids=[b[0] for b in BAD_DOCUMENTS])
def test_malformed_policy_is_one_line_exit_2(tmp_path: Path, option: str, name: str, content: object,
                                             problem: str) -> None:
    if option == "--scp" and name == "a-list":
        content = [ALLOW_ALL]  # an SCP level file may be a list: of documents, not statements
    path = _write(tmp_path, f"{name}.json", content)
    result = simulate(option, path)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert path in lines[0] and "Traceback" not in result.stderr
    if not (option == "--scp" and name == "a-list"):
        assert problem in lines[0]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--identity-policy", "/nonexistent/policy.json"], "/nonexistent/policy.json: no such file"),
        (["--context", "novalue"], "--context 'novalue': expected KEY=VALUE"),
        (["--context", "=x"], "expected KEY=VALUE"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(args: list[str], fragment: str) -> None:
    result = simulate(*args)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


def test_directory_instead_of_file(tmp_path: Path) -> None:
    result = simulate("--identity-policy", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_missing_required_option_is_one_line_exit_2() -> None:
    result = CliRunner().invoke(cli, ["simulate", "--resource", ARN])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["Error: Missing option '--action'."]


def test_bad_action_is_exit_2() -> None:
    result = CliRunner().invoke(cli, ["simulate", "--action", "connect", "--resource", ARN])
    assert result.exit_code == 2 and "'service:action'" in result.stderr
