"""``rdsvend local`` as a new user meets it: the help names both engines, and an operator
command in a local stack's shell whose stack is down says so (and only then)."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from devtools.cli.local_cmd import local
from devtools.cli.stack_check import local_stack_down
from devtools.local.last_run import LastRun, recall, remember


def test_local_help_names_postgresql_and_mariadb() -> None:
    text = CliRunner().invoke(local, ["--help"]).output
    assert "PostgreSQL" in text and "MariaDB" in text
    up = CliRunner().invoke(local, ["up", "--help"]).output
    assert "--world" in up and "--access" in up


def test_an_operator_command_with_the_stack_down_says_so(tmp_path: Path) -> None:
    env = {"RDSVEND_LOCAL_STACK": str(tmp_path / "state")}
    message = local_stack_down(["canary"], env)
    assert message is not None and message.startswith("the local stack is not running: rdsvend local up")
    assert local_stack_down(["doctor", "orders-local", "orders_app"], env) == message


def test_commands_that_need_no_stack_are_left_alone(tmp_path: Path) -> None:
    env = {"RDSVEND_LOCAL_STACK": str(tmp_path / "state")}
    for argv in (["local", "up", "--detach"], ["policy", "check", "policies/access.yaml"], ["canary", "--help"], []):
        assert local_stack_down(argv, env) is None, argv
    assert local_stack_down(["canary"], {}) is None  # not a local stack's shell


def test_the_last_run_is_private_and_a_bad_file_is_ignored(tmp_path: Path) -> None:
    state = tmp_path / "state"
    remember(state, LastRun({"moto": 40000, "db:orders-local": 40001}, {"222222222222/op": ("AKIA" + "A" * 16, "s" * 40)}))
    path = tmp_path / "state.last-run.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert recall(state).ports == {"moto": 40000, "db:orders-local": 40001}
    path.write_text('{"ports": {"moto": "x", "gateway": 80, "lambda": 40002}, "keys": {"a/b": ["bad key", "s"]}}')
    assert recall(state) == LastRun({"lambda": 40002}, {})
    path.write_text("not json")
    assert recall(state) == LastRun()


def test_the_administrators_passwords_are_kept_and_only_ones_the_stack_makes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    kept = "Zq3_-" * 6  # secrets.token_urlsafe's alphabet
    remember(state, LastRun({"db:orders-local": 40001}, {}, {"db:orders-local": kept}))
    assert recall(state).password("db:orders-local") == kept
    assert recall(state).password("db:shop-local") is None  # a database it has not seen: a new password
    assert kept not in repr(recall(state))
    (tmp_path / "state.last-run.json").write_text(
        '{"passwords": {"db:a": "short", "db:b": "has spaces and quotes \' in it!!", "db:c": 42}}')
    assert recall(state).passwords == {}
