"""``rdsvend local up [--detach] | env [--as caller|denied|operator|approver] | down``: the local stack."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

import click

__all__ = ["local"]

_STATE_HELP = ("where the stack keeps its state (default: $RDSVEND_LOCAL_STACK, which 'local env' sets, else "
               ".rdsvend/local in the repository)")


def _state_dir(value: str | None) -> Path:
    """``--state-dir``; else the stack of this shell (``RDSVEND_LOCAL_STACK``, set by ``local env``);
    else ``.rdsvend/local`` in the repository."""
    from devtools.local.stack import DEFAULT_STATE_DIR
    from devtools.local.state import LOCAL_STACK_ENV

    chosen = value or os.environ.get(LOCAL_STACK_ENV)
    return Path(chosen) if chosen else DEFAULT_STATE_DIR


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"rdsvend local: {message}", err=True)
    sys.exit(code)


@click.group()
def local() -> None:
    """Run rdsvend, its AWS and RDS-compatible PostgreSQL and MariaDB databases on this machine (loopback only)."""


@local.command()
@click.option("--detach", is_flag=True, help="start in the background and return once everything answers")
@click.option("--state-dir", default=None, help=_STATE_HELP)
@click.option("--world", "world_path", default=None, type=click.Path(dir_okay=False),
              help="world file (default: policies/world.yaml)")
@click.option("--access", "access_path", default=None, type=click.Path(dir_okay=False),
              help="access policy template (default: policies/local-access.yaml)")
def up(detach: bool, state_dir: str | None, world_path: str | None, access_path: str | None) -> None:
    """Start the local stack; in the foreground until Ctrl-C unless --detach.

    It listens on the previous run's ports when they are free and gives the world's callers
    their previous keys and the databases' administrators their previous passwords, so shells
    opened before a restart keep working."""
    from chalicelib.errors import PolicyLoadError
    from devtools.local.stack import DEFAULT_ACCESS, StackError, StackInfo, StackServer, spawn_detached
    from devtools.local.world import WorldError

    for label, path in (("--world", world_path), ("--access", access_path)):
        if path is not None and not Path(path).is_file():
            _fail(f"{label}: no such file '{path}'", 2)
    directory = _state_dir(state_dir)
    try:
        _check_inputs(world_path, access_path or str(DEFAULT_ACCESS))
        if detach:
            try:
                info = spawn_detached(directory, world_path=world_path, access_path=access_path)
            except KeyboardInterrupt:
                _fail("start interrupted: everything it had started is stopped", 130)
            click.echo(f"local stack running (pid {info.pid}): API {info.gateway_url}, AWS {info.moto_url}")
            click.echo("  eval \"$(rdsvend local env)\" to use it; 'rdsvend local down' to stop it")
            return
        server = StackServer(state_dir=directory, world_path=world_path, access_path=access_path or DEFAULT_ACCESS)

        def ready(info: StackInfo) -> None:
            click.echo(f"local stack ready: API {info.gateway_url}, AWS {info.moto_url}")
            for ident, db in info.databases.items():
                click.echo(f"  database {ident}: {db['host']}:{db['port']}/{db['dbname']} (TLS, IAM tokens)")
            click.echo("  in another shell: eval \"$(rdsvend local env)\"; Ctrl-C stops everything")

        try:
            server.serve_forever(ready=ready)
        except KeyboardInterrupt:
            click.echo("local stack start abandoned; everything it started is stopped")
            sys.exit(130)
        click.echo("local stack stopped")
    except (WorldError, PolicyLoadError) as exc:
        _fail(str(exc), 2)
    except StackError as exc:
        _fail(str(exc))


def _check_inputs(world_path: str | None, access_path: str) -> None:
    """Bad input is a one-line error before anything starts (exit 2)."""
    from chalicelib.policy.loader import load_policy_text
    from devtools.local.provision import merged_access_text
    from devtools.local.world import DEFAULT_WORLD, load_world

    world = load_world(world_path or DEFAULT_WORLD)
    # the template as the stack will use it: with the world's IAM and Kerberos users added
    load_policy_text(merged_access_text(Path(access_path), world), source=access_path)


#: ``--as`` name -> the world's part whose keys are exported
_PARTS = {"caller": "allowed", "denied": "denied", "operator": "operator", "approver": "approver"}


@local.command()
@click.option("--state-dir", default=None, help=_STATE_HELP)
@click.option("--as", "role", type=click.Choice(sorted(_PARTS)), default=None,
              help="whose keys to export: caller (the allowed caller, default), denied (a caller no rule "
                   "allows) or operator (a person in the service account, for canary, doctor, policy render "
                   "and discover; adds RDSVEND_ORG_ROLE_ARN) or approver (a person who approves just-in-time "
                   "grants: rdsvend grant approve|deny)")
@click.option("--caller", type=click.Choice(["allowed", "denied"]), default=None, hidden=True,
              help="older spelling of --as caller|denied")
def env(state_dir: str | None, role: str | None, caller: str | None) -> None:
    """Print export lines for a shell: eval "$(rdsvend local env [--as operator])".

    With no stack running it prints unset lines for every variable it would export (so an
    eval keeps none of a stopped stack's) and exits 1."""
    from devtools.local.stack import UNSET_ENV, running_info
    from devtools.local.state import LOCAL_ENV_NAMES, LOCAL_STACK_ENV

    if role is not None and caller is not None:
        _fail("--as and --caller cannot be combined (use --as)", 2)
    part = _PARTS[role] if role is not None else (caller or "allowed")
    directory = _state_dir(state_dir)
    info = running_info(directory)
    if info is None:
        # eval "$(rdsvend local env)" must not keep a stopped stack's endpoints and keys
        click.echo(f"unset {' '.join(LOCAL_ENV_NAMES)}")
        click.echo(f"export {LOCAL_STACK_ENV}={shlex.quote(str(directory.resolve()))}")
        _fail("no local stack is running (start one with 'rdsvend local up --detach'); "
              "the variables of a previous one are unset")
    if part not in info.seeded.callers:
        _fail(f"--as {role}: the running stack's world has no {role}", 2)
    click.echo(f"unset {' '.join(UNSET_ENV)}")
    for key, value in info.env(part).items():
        click.echo(f"export {key}={shlex.quote(value)}")


@local.command()
@click.option("--state-dir", default=None, help=_STATE_HELP)
def down(state_dir: str | None) -> None:
    """Stop the local stack: no process, listener or temp dir is left (also after a crash)."""
    from devtools.local.stack import down as stack_down

    report = stack_down(_state_dir(state_dir))
    if not report.stopped and report.clean:
        click.echo("no local stack was running")
        return
    for item in report.stopped:
        click.echo(f"stopped {item}")
    if not report.clean:
        for item in report.leftovers:
            click.echo(f"rdsvend local: left behind: {item}", err=True)
        sys.exit(1)
    click.echo("local stack is down")
