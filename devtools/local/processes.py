"""Whether a process the local stack started is still running, read from /proc (Linux).

A server that ``pg_ctl`` or ``mariadbd`` daemonized is reparented to the machine's init once
it exits, and stays a zombie until init reaps it (on some machines more than a second later):
a zombie has stopped, so it does not count as alive, and nothing waits for the reaping.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["alive", "proc_start_time"]


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int | None, start_time: str | None = None) -> bool:
    """``pid`` runs (and, given ``start_time``, is the process that started then); a zombie does not run."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start_time is not None and proc_start_time(pid) != start_time:
        return False
    return _proc_state(pid) not in ("Z", "X")


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
