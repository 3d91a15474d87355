"""The README's shell examples say where they run, and the runner that checks the local ones
(tests/e2e/test_readme_local.py) fails a block for any failing command, naming its line."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.support.readme import Block, blocks, failure_text, run_block

SHELL_INFOS = {"sh", "sh local", "sh prod"}


def test_every_shell_example_says_where_it_runs() -> None:
    shells = [b for b in blocks() if b.info.split()[:1] in (["sh"], ["bash"], ["shell"], ["console"])]
    assert shells
    assert {b.info for b in shells} <= SHELL_INFOS, [(b.line, b.info) for b in shells if b.info not in SHELL_INFOS]


def test_local_examples_name_only_what_the_local_stack_has() -> None:
    for block in blocks():
        if block.info == "sh local":
            assert "orders-prod" not in block.text, f"README.md line {block.line} names orders-prod"
            assert "signer.json" not in block.text or "> signer.json" in block.text, f"README.md line {block.line}"


def test_the_first_local_stack_command_comes_after_rdsvend_is_put_on_path() -> None:
    setup = [b for b in blocks() if b.info == "sh" and "rdsvend local up" in b.text][0]
    first_rdsvend = min(b.line for b in blocks() if b.info.startswith("sh") and "rdsvend " in b.text)
    assert setup.line == first_rdsvend
    assert setup.text.splitlines()[0].startswith(". .venv/bin/activate")


def test_blocks_are_read_with_their_info_string_and_line(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n```sh local\nrdsvend whoami\n```\n\ntext\n```sh prod\naws rds x\n```\n")
    assert blocks(readme) == [Block("sh local", 3, "rdsvend whoami\n"), Block("sh prod", 8, "aws rds x\n")]


def _run(tmp_path: Path, text: str, **kwargs: Any) -> tuple[Block, subprocess.CompletedProcess[str]]:
    block = Block("sh local", 42, text)
    return block, run_block(block, tmp_path / "state", tmp_path, local_env=False, **kwargs)


def test_a_failing_command_anywhere_fails_the_block_naming_its_line(tmp_path: Path) -> None:
    for text in ("true\nfalse\necho never\n", "echo x | false | cat\n", 'echo "$NOT_SET_ANYWHERE"\n'):
        block, done = _run(tmp_path, text)
        assert done.returncode != 0, text
        assert "never" not in done.stdout
        assert failure_text(block, done).startswith("README.md line 42: the 'sh local' block failed")


def test_a_block_that_hangs_is_stopped(tmp_path: Path) -> None:
    block, done = _run(tmp_path, "sleep 30\n", timeout=1)
    assert done.returncode == -1 and "timed out after 1 s" in done.stderr


def test_blocks_run_with_a_private_home_and_the_stack_named(tmp_path: Path) -> None:
    _block, done = _run(tmp_path, 'echo "$HOME $RDSVEND_LOCAL_STACK"; command -v rdsvend\n')
    assert done.returncode == 0, done.stderr
    home, stack = done.stdout.split()[:2]
    assert home == str(tmp_path) and stack == str(tmp_path / "state")


def test_no_fence_carries_text_after_it() -> None:
    """A closing fence followed by text is no fence: the block would run into the next paragraph."""
    from tests.support.readme import README

    bad = [n for n, line in enumerate(README.read_text().splitlines(), 1) if line.startswith("```") and "`" in line[3:]]
    assert not bad, f"README.md lines {bad}"
