"""The operator commands of the ``rdsvend`` command (from a checkout, after ``make install``).

The client's ``rdsvend`` (``rdsvend.cli``) finds them through the entry-point group
``rdsvend.commands`` and hands over the argument list to :func:`run`.

Exit codes: 0 success, 1 a check or decision said no, 2 bad usage or input that does
not load. Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import os
import sys

import click

from devtools.cli.lazy import LazyGroup
from devtools.cli.stack_check import local_stack_down

__all__ = ["cli", "main", "run"]

COMMANDS = {
    "policy": "devtools.cli.policy_cmd:policy",
    "simulate": "devtools.cli.simulate_cmd:simulate",
    "local": "devtools.cli.local_cmd:local",
    "canary": "devtools.cli.canary_cmd:canary",
    "doctor": "devtools.cli.canary_cmd:doctor",
    "discover": "devtools.cli.discover_cmd:discover",
    "rotate": "devtools.cli.rotate_cmd:rotate",
    "audit": "devtools.cli.audit_cmd:audit",
}


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS)
@click.version_option(package_name="rdsvend-service")
def cli() -> None:
    """rdsvend: short-lived RDS IAM database auth tokens, vended by policy."""


def run(argv: list[str]) -> None:
    """Run one operator command with ``argv`` (what follows ``rdsvend``)."""
    down = local_stack_down(argv, os.environ)
    if down is not None:
        click.echo(f"rdsvend: error: {down}", err=True)
        sys.exit(1)
    main(argv)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="rdsvend", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
