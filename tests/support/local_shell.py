"""A shell on the local stack: the environment after ``eval "$(rdsvend local env --as PART)"``,
and ``rdsvend`` run in it as a subprocess (the end-to-end tests of the local organization)."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["REPO", "shell_env", "rdsvend", "as_at_a_terminal"]

REPO = Path(__file__).resolve().parents[2]


def shell_env(stack: Any, part: str) -> dict[str, str]:
    """The environment of a shell after ``eval "$(rdsvend local env --as PART)"``."""
    done = subprocess.run([sys.executable, "-m", "rdsvend.cli", "local", "env", "--as", part, "--state-dir",
                           stack.info.state_dir], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    env = dict(os.environ)
    for line in done.stdout.splitlines():
        words = shlex.split(line)
        if words[0] == "unset":
            for name in words[1:]:
                env.pop(name, None)
        else:
            assert words[0] == "export", line
            name, value = words[1].split("=", 1)
            env[name] = value
    return env


def rdsvend(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``rdsvend ARGS`` in that shell."""
    return subprocess.run([sys.executable, "-m", "rdsvend.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)


def as_at_a_terminal() -> None:
    """``preexec_fn`` for a command a test stops with SIGINT, as Ctrl-C at a terminal would: the
    signal handled by default, also when the tests themselves run where it is ignored (a
    shell's background job, whose children inherit the ignoring)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
