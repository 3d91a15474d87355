"""Stopping the local stack, also after a crash: every recorded process, port and temp dir."""
from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.local.mariadb import MariaDBError, stop_mariadb_dir
from devtools.local.postgres import BACKEND_HOST, PostgresError, stop_cluster_dir
from devtools.local.state import DEFAULT_STATE_DIR, LOG_FILE, STATE_FILE, alive, read_state

__all__ = ["DownReport", "down", "remove_state_dir", "listening_sockets", "listen_table"]

log = logging.getLogger("devtools.local.stack")

# -- stopping, also after a crash ------------------------------------------------------------------

@dataclass(frozen=True)
class DownReport:
    stopped: tuple[str, ...]
    leftovers: tuple[str, ...]  # what could not be stopped or removed (empty when all is gone)

    @property
    def clean(self) -> bool:
        return not self.leftovers


#: where the stack keeps its RDS Proxy fronts' TLS material, inside the state dir
PROXY_TLS_DIR = "proxy-tls"


def remove_state_dir(state_dir: Path) -> None:
    """Remove the files the stack writes, then the dir if nothing else is in it."""
    for name in (STATE_FILE, "access.yaml", "ca.pem", "denials.jsonl"):
        try:
            (state_dir / name).unlink()
        except FileNotFoundError:
            pass
    for tmp in state_dir.glob(f".{STATE_FILE}.*.tmp"):
        tmp.unlink(missing_ok=True)
    shutil.rmtree(state_dir / PROXY_TLS_DIR, ignore_errors=True)  # the RDS Proxy fronts' certificates


def down(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *, timeout: float = 30.0) -> DownReport:
    """Stop the stack recorded in ``state_dir``: the server process, every PostgreSQL, every temp
    dir. Works when the server crashed (its PostgreSQL is stopped from its data dir)."""

    state_dir = Path(state_dir).resolve()
    state = read_state(state_dir)
    stopped: list[str] = []
    leftovers: list[str] = []
    if state is None:
        if state_dir.exists():
            remove_state_dir(state_dir)
            _remove_log(state_dir)
        return DownReport((), ())
    pid = state.get("pid")
    if pid and pid != os.getpid() and alive(pid, state.get("proc_start")):
        _stop_process(pid, state.get("proc_start"), timeout)
        stopped.append(f"stack process {pid}")
    for key, label, stop, errors in _DATABASES:
        for base in state.get(key, []):
            if Path(base).exists():
                try:
                    stop(base, timeout=timeout)
                    stopped.append(f"{label} in {base}")
                except errors as exc:
                    leftovers.append(f"{label} in {base}: {exc}")
    leftovers += _still_running(state, pid)
    remove_state_dir(state_dir)
    _remove_log(state_dir)
    return DownReport(tuple(stopped), tuple(leftovers))


#: the databases a stack records (state key, what to call them, how to stop one from its data
#: dir, what that raises): the local PostgreSQLs, and the MariaDBs (devtools.local.rds_mysql)
_DATABASES: tuple[tuple[str, str, Callable[..., Any], tuple[type[Exception], ...]], ...] = (
    ("pg", "postgres", stop_cluster_dir, (PostgresError, OSError)),
    ("mariadb", "mariadb", stop_mariadb_dir, (MariaDBError, OSError)),
)


def _stop_process(pid: int, proc_start: str | None, timeout: float) -> None:
    """SIGTERM, up to ``timeout`` to exit, then SIGKILL; reaped when it was our child."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid, proc_start) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid, proc_start):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    _reap(pid)


def _still_running(state: dict[str, Any], pid: int | None) -> list[str]:
    """The stack's processes still alive and its ports still listened on (by it, or by no one we can see)."""
    found: list[str] = []
    ours = {p for p in [pid, *state.get("pg_pids", [])] if p}
    for other in ours - {os.getpid()}:
        if alive(other) and other != pid:
            found.append(f"process {other} is still running")
    for port in state.get("ports", []):
        for host in ("127.0.0.1", BACKEND_HOST):  # a PostgreSQL listens behind its front on the same port number
            if _listening(host, int(port)):
                owner = _port_owner(int(port))
                # a port the kernel has since handed to someone else is not ours to report
                if owner is None or owner in ours:
                    found.append(f"something still listens on {host}:{port}")
    return found


def _remove_log(state_dir: Path) -> None:
    (state_dir / LOG_FILE).unlink(missing_ok=True)
    try:
        state_dir.rmdir()
    except OSError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_owner(port: int) -> int | None:
    """The pid holding the LISTEN socket on ``port``, when this process may see it."""
    inodes = {f"socket:[{inode}]" for _addr, p, inode in listen_table() if p == port}
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                try:
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def listening_sockets(pids: Iterable[int]) -> list[tuple[str, int, int]]:
    """``(address, port, pid)`` of every TCP socket in LISTEN state held by ``pids`` (Linux)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    return [(addr, port, inodes[inode]) for addr, port, inode in listen_table() if inode in inodes]


def listen_table() -> list[tuple[str, int, str]]:
    """``(address, port, socket inode)`` of every TCP socket in LISTEN state (Linux /proc)."""
    found = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, st, inode = fields[1], fields[3], fields[9]
            if st != "0A":  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            found.append((_decode_addr(addr_hex, family), int(port_hex, 16), inode))
    return found


def _decode_addr(hex_addr: str, family: int) -> str:
    raw = bytes.fromhex(hex_addr)
    # /proc/net/tcp* stores each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.IPv4Address(words) if family == 4 else ipaddress.IPv6Address(words))
