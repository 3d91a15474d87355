"""The README's shell examples, and running one as a person would in the local stack's shell.

A fenced block's info string says where it runs: ``sh local`` in the local stack's shell
(after ``eval "$(rdsvend local env)"``), ``sh prod`` only against a real deployment, plain
``sh`` in a shell at the top of the checkout (setting the stack up, restarting it)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["README", "Block", "blocks", "block_containing", "run_block", "failure_text"]

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    info: str  # the fence's info string: "sh local", "sh prod", "sh", "python" ...
    line: int  # the opening fence's line number in README.md (1-based)
    text: str


def blocks(path: Path = README) -> list[Block]:
    """Every fenced block of the README, in order."""
    found: list[Block] = []
    opened: tuple[str, int] | None = None
    body: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = _FENCE.match(line.rstrip())
        if fence is None:
            if opened is not None:
                body.append(line)
            continue
        if opened is None:
            opened, body = (fence["info"].strip(), number), []
        else:
            found.append(Block(opened[0], opened[1], "\n".join(body) + "\n"))
            opened = None
    return found


def block_containing(needle: str, info: str = "sh") -> Block:
    """The one ``info`` block whose text contains ``needle``."""
    matches = [b for b in blocks() if b.info == info and needle in b.text]
    assert len(matches) == 1, f"expected one '{info}' block containing {needle!r}, found {len(matches)}"
    return matches[0]


def shell_environment(state_dir: str | os.PathLike[str], home: Path) -> dict[str, str]:
    """A clean environment: no AWS, PostgreSQL or rdsvend variables of the caller's own, HOME in
    a temporary directory (examples write ~/.pgpass), the checkout's ``rdsvend`` first on PATH,
    and the stack to use in ``RDSVEND_LOCAL_STACK`` (what ``local env`` reads)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "RDSVEND_", "MYSQL_"))}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               RDSVEND_LOCAL_STACK=str(state_dir))
    return env


def run_block(block: Block, state_dir: str | os.PathLike[str], home: Path, *, timeout: float = 180,
              local_env: bool = True, cwd: Path = README.parent) -> subprocess.CompletedProcess[str]:
    """``block`` in a fresh bash (``set -euo pipefail``) in the checkout; with ``local_env``, after
    ``eval "$(rdsvend local env)"`` as the README's local stack's shell."""
    prologue = 'set -euo pipefail\n' + ('eval "$(rdsvend local env)"\n' if local_env else "")
    try:
        return subprocess.run(["bash", "-c", prologue + block.text], cwd=cwd,
                              env=shell_environment(state_dir, home), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, -1, _text(exc.stdout), _text(exc.stderr) +
                                           f"\n(timed out after {timeout:g} s)")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


def failure_text(block: Block, done: subprocess.CompletedProcess[str]) -> str:
    return (f"README.md line {block.line}: the '{block.info}' block failed (exit {done.returncode}):\n"
            f"{block.text}--- stdout (end) ---\n{done.stdout[-3000:]}\n--- stderr (end) ---\n{done.stderr[-3000:]}")
