"""The local stack across restarts, as a person at a terminal sees it: ``rdsvend local up``
keeps the previous run's ports and the callers' keys (a shell opened before a restart still
works after it), commands run while the stack is down say so, ``local env`` then unsets the
stale variables, and Ctrl-C during ``up --detach`` leaves nothing running."""
from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest
from psycopg.conninfo import conninfo_to_dict

from devtools.local.last_run import last_run_path
from devtools.local.postgres import BACKEND_HOST, DEFAULT_BIN_DIR
from devtools.local.state import LOCAL_ENV_NAMES, LOCAL_STACK_ENV, LOG_FILE, alive, read_state
from tests.support.local_shell import REPO, interruptible, rdsvend, shell_env
from tests.support.readme import block_containing, failure_text, run_block

pytestmark = pytest.mark.e2e


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdsvend.cli", *args], cwd=REPO, env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=timeout, check=False)


def _listening(port: int) -> bool:
    """Something listens on ``port``: a front on 127.0.0.1, or a PostgreSQL behind one."""
    for host in ("127.0.0.1", BACKEND_HOST):
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            pass
    return False


class _Stack:
    """A stack driven through the CLI only, in its own state dir; ``info.state_dir`` for shell_env."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.info = self  # shell_env reads stack.info.state_dir

    def shell(self, part: str) -> dict[str, str]:
        return shell_env(self, part)

    def up(self) -> None:
        done = _cli("local", "up", "--detach", "--state-dir", str(self.state_dir))
        assert done.returncode == 0, done.stderr

    def down(self) -> None:
        done = _cli("local", "down", "--state-dir", str(self.state_dir))
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[_Stack]:
    if not (Path(DEFAULT_BIN_DIR) / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 binaries not found in {DEFAULT_BIN_DIR}")
    made = _Stack(tmp_path / "state")
    yield made
    _cli("local", "down", "--state-dir", str(made.state_dir))


#: what ``local env`` exports for the databases' administrators (they hold passwords)
ADMIN_DSNS = ("RDSVEND_LOCAL_ADMIN_DSN", "RDSVEND_LOCAL_MYSQL_ADMIN_DSN")


def _passwords(dsns: dict[str, str]) -> list[str]:
    mysql = urlsplit(dsns["RDSVEND_LOCAL_MYSQL_ADMIN_DSN"])
    return [str(conninfo_to_dict(dsns["RDSVEND_LOCAL_ADMIN_DSN"])["password"]), unquote(mysql.password or "")]


def _admin_logins(dsns: dict[str, str]) -> None:
    """Both DSNs log in as their administrator, as a person would use them."""
    with psycopg.connect(dsns["RDSVEND_LOCAL_ADMIN_DSN"], connect_timeout=10) as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)
    mysql = urlsplit(dsns["RDSVEND_LOCAL_MYSQL_ADMIN_DSN"])
    ca = ssl.create_default_context(cafile=str(conninfo_to_dict(dsns["RDSVEND_LOCAL_ADMIN_DSN"])["sslrootcert"]))
    conn = pymysql.connect(host=mysql.hostname, port=mysql.port, user=unquote(mysql.username or ""),
                           password=unquote(mysql.password or ""), ssl=ca, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("select current_user()")
            assert cur.fetchone()[0].startswith("admin@")
    finally:
        conn.close()


def _interrupt_a_start(state_dir: Path) -> None:
    """``up --detach`` interrupted (SIGINT, as Ctrl-C sends) once the stack has started parts."""
    starting = subprocess.Popen(interruptible("local", "up", "--detach", "--state-dir", str(state_dir)), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline:
        state = read_state(state_dir)
        if state and state.get("status") == "starting" and len(state.get("ports", [])) >= 2:
            break
        time.sleep(0.05)
    assert state and state.get("status") == "starting", "the start never got going"
    starting.send_signal(signal.SIGINT)
    out, err = starting.communicate(timeout=120)
    assert starting.returncode == 130, out + err
    assert "start interrupted: everything it had started is stopped" in err
    assert "Aborted" not in out + err
    assert not alive(state["pid"], state.get("proc_start")), "the stack process is still running"
    leftovers = [p for p in state.get("ports", []) if _listening(int(p))]
    assert not leftovers, f"still listening after Ctrl-C: {leftovers}"
    assert read_state(state_dir) is None


def test_restart_keeps_shells_valid_and_the_stack_being_down_is_said(stack: _Stack, tmp_path: Path) -> None:
    # the README's first local-stack commands, verbatim (. .venv/bin/activate; local up --detach; eval)
    setup = block_containing(". .venv/bin/activate")
    if not (REPO / ".venv" / "bin" / "activate").exists():
        pytest.skip("no .venv in the checkout (make install)")
    done = run_block(setup, stack.state_dir, tmp_path, local_env=False, timeout=240)
    assert done.returncode == 0, failure_text(setup, done)
    shell, operator = stack.shell("caller"), stack.shell("operator")
    first = rdsvend(shell, "token", "orders-local", "orders_app", "--format", "json")
    assert first.returncode == 0, first.stderr
    remembered = json.loads(last_run_path(stack.state_dir).read_text())
    assert os.stat(last_run_path(stack.state_dir)).st_mode & 0o077 == 0
    admin_dsns = {name: shell[name] for name in ADMIN_DSNS}
    stack.down()

    # down: every command of the old shell says so, and local env clears the old variables
    token = rdsvend(shell, "token", "orders-local", "orders_app")
    assert token.returncode == 1
    assert token.stderr.startswith("rdsvend: error: the local stack is not running: rdsvend local up")
    canary = rdsvend(operator, "canary")
    assert canary.returncode == 1
    assert canary.stderr.startswith("rdsvend: error: the local stack is not running: rdsvend local up")
    assert "policy file" not in canary.stderr
    env = _cli("local", "env", env=shell)
    assert env.returncode == 1 and "no local stack is running" in env.stderr
    cleared = subprocess.run(["bash", "-c", 'eval "$(rdsvend local env 2>/dev/null)"; env'], cwd=REPO,
                             env={**shell, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{shell['PATH']}"},
                             capture_output=True, text=True, timeout=60, check=False).stdout
    names = {line.split("=", 1)[0] for line in cleared.splitlines()}
    assert not names & set(LOCAL_ENV_NAMES), names & set(LOCAL_ENV_NAMES)
    assert f"{LOCAL_STACK_ENV}={stack.state_dir.resolve()}" in cleared

    # Ctrl-C during up --detach leaves nothing running, and the next up works
    _interrupt_a_start(stack.state_dir)
    stack.up()

    # the shell from before the restart works as it was
    again = rdsvend(shell, "token", "orders-local", "orders_app", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["port"] == json.loads(first.stdout)["port"]
    assert json.loads(last_run_path(stack.state_dir).read_text())["ports"] == remembered["ports"]
    logged_in = rdsvend(shell, "exec", "orders-local", "orders_app", "--", "psql", "-tAc", "select current_user")
    assert logged_in.returncode == 0, logged_in.stderr
    assert logged_in.stdout.strip() == "orders_app"
    # so do the administrator DSNs it holds (the same passwords): local env says them again, they
    # log in, and the operator's canary, which reads the catalogs through them, passes
    same = {name: stack.shell("caller")[name] for name in ADMIN_DSNS} == admin_dsns
    assert same, "local env exports other administrator DSNs after the restart"  # (not shown: they hold passwords)
    _admin_logins(admin_dsns)
    canary = rdsvend(operator, "canary")
    assert canary.returncode == 0, canary.stdout[-2000:] + canary.stderr
    log = (stack.state_dir / LOG_FILE).read_text()
    assert not [p for p in _passwords(admin_dsns) if p in log], "an administrator password is in the stack log"

    # the README's steps to add a database user to the local world, verbatim, in that shell
    add_user = block_containing("orders_reports")
    done = run_block(add_user, stack.state_dir, tmp_path, timeout=240)
    assert done.returncode == 0, failure_text(add_user, done)
    assert done.stdout.strip().splitlines()[-1] == "orders_reports"
    stack.down()


def test_a_port_taken_meanwhile_is_replaced_by_a_free_one(stack: _Stack) -> None:
    stack.up()
    ports = json.loads(last_run_path(stack.state_dir).read_text())["ports"]
    stack.down()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the old port may be in TIME_WAIT
        squatter.bind(("127.0.0.1", ports["gateway"]))
        squatter.listen(1)
        stack.up()
        now = json.loads(last_run_path(stack.state_dir).read_text())["ports"]
        assert now["gateway"] != ports["gateway"]
        assert now["moto"] == ports["moto"]
    stack.down()
