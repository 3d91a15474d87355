"""Entry point of the ``rdsvend`` console command.

Exit codes: 0 success, 1 a check or decision said no, 2 bad usage or input that does
not load. Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import sys

import click

from chalicelib.cli.lazy import LazyGroup

__all__ = ["cli", "main"]

COMMANDS = {
    "policy": "chalicelib.cli.policy_cmd:policy",
    "simulate": "chalicelib.cli.simulate_cmd:simulate",
    "local": "chalicelib.cli.local_cmd:local",
    "canary": "chalicelib.cli.canary_cmd:canary",
    "doctor": "chalicelib.cli.canary_cmd:doctor",
    "token": "chalicelib.cli.client_cmd:token",
    "pgpass": "chalicelib.cli.client_cmd:pgpass",
    "passexec": "chalicelib.cli.client_cmd:passexec",
    "exec": "chalicelib.cli.client_cmd:exec_",
}


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS)
@click.version_option(package_name="rdsvend")
def cli() -> None:
    """rdsvend: short-lived RDS IAM database auth tokens, vended by policy."""


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="rdsvend", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
