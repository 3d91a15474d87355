"""A shell on the local stack: the environment after ``eval "$(rdsvend local env --as PART)"``,
and ``rdsvend`` run in it as a subprocess (the end-to-end tests of the local organization)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["REPO", "shell_env", "rdsvend", "interruptible"]

REPO = Path(__file__).resolve().parents[2]


def shell_env(stack: Any, part: str) -> dict[str, str]:
    """The environment of a shell after ``eval "$(rdsvend local env --as PART)"``."""
    done = subprocess.run([sys.executable, "-m", "rdsvend.cli", "local", "env", "--as", part, "--state-dir",
                           stack.info.state_dir], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
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
                          text=True, timeout=180, check=False)


# Python leaves SIGINT ignored when it starts with it ignored: set Python's own handler first.
_AS_AT_A_TERMINAL = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                     "sys.argv[0] = 'rdsvend'; runpy.run_module('rdsvend.cli', run_name='__main__', alter_sys=True)")


def interruptible(*args: str) -> list[str]:
    """The command line of ``rdsvend ARGS`` for a test that stops it with SIGINT, as Ctrl-C at a
    terminal would: Python's handler for it is set, also when the tests run where SIGINT is
    ignored (a shell's background job, whose children inherit the ignoring)."""
    return [sys.executable, "-c", _AS_AT_A_TERMINAL, *args]
