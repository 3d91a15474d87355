"""The local stack's lifecycle: start everything, describe it, stop it (also after a crash).

Two halves:

- :class:`StackServer` runs the stack in *this* process: moto in server mode seeded from the
  world file, the bind-only LDAP responder with the RDS token checker, one RDS-shaped
  PostgreSQL per database in the world, and the SigV4 gateway with the Chalice app in
  process (configured, as the Lambda would be, through its environment). ``rdsvend local up``
  runs it in the foreground; ``python -m devtools.local.stack`` is what ``--detach`` spawns.
- :class:`LocalStack` is the context manager the tests and ``make demo`` use: it spawns the
  server as a detached child, waits until everything answers, and reads the state file.
  Keeping the stack out of the caller's process keeps moto's global state and the app's
  environment away from the caller's own boto3 clients.

Everything the stack starts is written to ``state.json`` in its state directory (by default
``.rdsvend/local/`` in the repository, which git ignores) as soon as it exists, so that
:func:`down` can stop it all and remove every temp dir even when the server died.
Everything binds 127.0.0.1.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devtools.local.authorize import read_denials
from devtools.local.calls import signed_request
from devtools.local.server import StackServer
from devtools.local.state import (
    DEFAULT_ACCESS,
    DEFAULT_STATE_DIR,
    LOG_FILE,
    REPO_ROOT,
    UNSET_ENV,
    StackError,
    StackInfo,
    alive,
    read_state,
    running_info,
)
from devtools.local.teardown import DownReport, down, listen_table, listening_sockets

__all__ = [
    "REPO_ROOT",
    "DEFAULT_STATE_DIR",
    "DEFAULT_ACCESS",
    "StackError",
    "StackInfo",
    "StackServer",
    "LocalStack",
    "DownReport",
    "down",
    "read_state",
    "running_info",
    "signed_request",
    "spawn_detached",
    "listening_sockets",
    "listen_table",
    "UNSET_ENV",
]

log = logging.getLogger(__name__)


# -- a stack in a child process --------------------------------------------------------------------

def spawn_detached(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *, timeout: float = 90.0,
                   world_path: str | None = None, access_path: str | None = None,
                   enforce: bool = True) -> StackInfo:
    """Start the stack as a detached process; return once everything answers."""
    state_dir = Path(state_dir).resolve()
    existing = read_state(state_dir)
    if existing and alive(existing.get("pid"), existing.get("proc_start")):
        raise StackError(f"a local stack is already running from {state_dir} (pid {existing['pid']}); "
                         "run 'rdsvend local down' first")
    if existing:
        down(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "devtools.local.stack", "--state-dir", str(state_dir)]
    if world_path:
        argv += ["--world", str(world_path)]
    if access_path:
        argv += ["--access", str(access_path)]
    if not enforce:
        argv += ["--no-enforce"]
    log_path = state_dir / LOG_FILE
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True, cwd=str(REPO_ROOT))
    try:
        return _wait_ready(child, state_dir, log_path, timeout)
    except BaseException:  # Ctrl-C (KeyboardInterrupt) included: nothing may keep running
        _abandon(child, state_dir)
        raise


def _wait_ready(child: subprocess.Popen[bytes], state_dir: Path, log_path: Path, timeout: float) -> StackInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(state_dir)
        if state and state.get("pid") == child.pid and state.get("status") == "ready":
            return StackInfo.from_json(state["info"])
        if child.poll() is not None:
            raise StackError(f"the local stack exited with status {child.returncode} while starting: "
                             f"{_tail(log_path)}")
        time.sleep(0.1)
    raise StackError(f"the local stack did not answer within {int(timeout)} s: {_tail(log_path)}")


def _abandon(child: subprocess.Popen[bytes], state_dir: Path, grace: float = 60.0) -> None:
    """Stop a start that will not be waited for: the child stops what it started (SIGTERM makes
    its start give up and clean up), then ``down`` removes whatever is left."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    down(state_dir)


def _tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


class LocalStack:
    """The local stack in a child process, as a context manager (tests, ``make demo``).

    >>> with LocalStack() as stack:          # doctest: +SKIP
    ...     stack.env()["RDSVEND_URL"]
    """

    def __init__(self, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *, timeout: float = 90.0,
                 world_path: str | None = None, access_path: str | None = None, enforce: bool = True) -> None:
        self.state_dir = Path(state_dir).resolve()
        #: ``False``: the local AWS does not authorize requests (only for a test that needs it)
        self.enforce = enforce
        self.timeout = timeout
        self.world_path = world_path
        self.access_path = access_path
        self._info: StackInfo | None = None

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            raise StackError("the local stack is not started")
        return self._info

    def start(self) -> LocalStack:
        self._info = spawn_detached(self.state_dir, timeout=self.timeout, world_path=self.world_path,
                                    access_path=self.access_path, enforce=self.enforce)
        return self

    def stop(self) -> DownReport:
        self._info = None
        return down(self.state_dir)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # conveniences for tests and the demo
    def env(self, caller: str = "allowed") -> dict[str, str]:
        return self.info.env(caller)

    def keys(self, caller: str = "allowed") -> Any:
        return self.info.keys(caller)

    def request(self, method: str, path: str, body: Any = None, *, caller: str = "allowed") -> tuple[int, Any]:
        return signed_request(self.info, method, path, body, caller=caller)

    @property
    def url(self) -> str:
        return self.info.gateway_url

    @property
    def moto_url(self) -> str:
        return self.info.moto_url

    @property
    def ca_path(self) -> str:
        return self.info.ca_path

    @property
    def admin_dsn(self) -> str:
        return self.info.admin_dsn

    def denials(self) -> list[Any]:
        """The requests the local AWS refused so far (:class:`devtools.local.authorize.Denial`),
        oldest first: principal, action, resource, deciding layer."""

        return list(read_denials(self.state_dir))

    def pids(self) -> list[int]:
        """The stack process and every postmaster with its children."""
        pids = [self.info.pid]
        for db in self.info.databases.values():
            if db.get("pg_pid"):
                pids.append(int(db["pg_pid"]))
                pids.extend(_children(int(db["pg_pid"])))
        return pids


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            out.extend(int(c) for c in children)
    except OSError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.local.stack --state-dir DIR``: the detached server."""

    parser = argparse.ArgumentParser(prog="python -m devtools.local.stack")
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    parser.add_argument("--world")
    parser.add_argument("--access")
    parser.add_argument("--no-enforce", action="store_true", help="the local AWS does not authorize requests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = StackServer(state_dir=args.state_dir, world_path=args.world,
                         access_path=args.access or DEFAULT_ACCESS, enforce=not args.no_enforce)
    try:
        server.serve_forever(ready=lambda info: print(f"local stack ready at {info.gateway_url}", flush=True))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, the state is cleaned up by stop()
        print(f"local stack failed: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
