"""Every ``sh local`` example of the README runs as written in the local stack's shell.

One local stack (the session's) for all blocks; each block runs in a fresh bash with
``set -euo pipefail`` after ``eval "$(rdsvend local env)"``, in the checkout, with HOME in a
temporary directory, under a timeout. A block that exits non-zero fails its test, naming the
README line it starts on. Blocks run in the README's order; a block that changes the world
must put it back (as every end-to-end test must).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from devtools.local.stack import LocalStack
from tests.support.readme import Block, blocks, failure_text, run_block

pytestmark = pytest.mark.e2e

LOCAL_BLOCKS = [b for b in blocks() if b.info == "sh local"]


def test_the_readme_has_local_examples() -> None:
    assert len(LOCAL_BLOCKS) >= 8


@pytest.mark.parametrize("block", LOCAL_BLOCKS, ids=[f"README.md:{b.line}" for b in LOCAL_BLOCKS])
def test_readme_local_block_runs_as_written(block: Block, local_stack: LocalStack, tmp_path: Path) -> None:
    done = run_block(block, local_stack.info.state_dir, tmp_path)
    if done.returncode != 0:
        pytest.fail(failure_text(block, done), pytrace=False)
