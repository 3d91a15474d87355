"""``rdsvend token | pgpass | passexec | exec | whoami | databases``: a fresh token where a
person or a tool needs it, and what the service makes of its caller.

Every command makes one SigV4-signed call (the caller's usual AWS credentials) to the
rdsvend URL from ``--url`` or ``RDSVEND_URL``. A refusal from the service is one line on
stderr naming its code, exit 1; bad usage, a missing URL, missing credentials or credentials
the gateway refuses (``bad_credentials``), exit 2 (:mod:`rdsvend.cliutil`).

The client needs nothing but botocore, so it parses its arguments with :mod:`argparse`.
A checkout of rdsvend adds the operator commands (``canary``, ``doctor``, ``local`` ...)
through the entry-point group ``rdsvend.commands``: each entry names a module with a
``COMMANDS`` mapping (command names) and ``run(argv)``. It is loaded only when the command
line asks for something that is not a client command.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import NoReturn

from rdsvend.api import VendApi, VendedToken
from rdsvend.cli_exec import run_logged_in, split_command
from rdsvend.cli_info import INFO_COMMANDS, add_info_commands
from rdsvend.cli_pgpass import run_pgpass
from rdsvend.cliutil import describe, exit_code, fail, make_api
from rdsvend.connect import conninfo, libpq_env
from rdsvend.errors import VendError
from rdsvend.grants import add_grant_commands
from rdsvend.mysql import is_mysql_family, mysql_url

__all__ = ["main", "build_parser", "OPERATOR_GROUP", "OPERATOR_COMMANDS"]

OPERATOR_GROUP = "rdsvend.commands"
_FORMATS = ("token", "json", "dsn", "env")
_CLIENT_COMMANDS = ("token", "passexec", "pgpass", "exec", "grant", *INFO_COMMANDS)
#: Commands for operators, which need the service's checkout (the access policy, AWS reads,
#: the local stack); named here only to say so when they are missing.
OPERATOR_COMMANDS = frozenset({"canary", "doctor", "simulate", "policy", "local", "discover", "audit", "rotate"})


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit 2, like every rdsvend command."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')", 2)


def _fail(message: str, code: int) -> NoReturn:
    fail(message, code)


def _api(url: str | None) -> VendApi:
    return make_api(url)


def _vend(url: str | None, database: str, db_user: str) -> VendedToken:
    api = _api(url)
    try:
        return api.vend(database, db_user)
    except VendError as exc:
        _fail(describe(exc, url), exit_code(exc))


def _cmd_token(args: argparse.Namespace) -> None:
    vended = _vend(args.url, args.database, args.db_user)
    if args.format == "token":
        print(vended.token)
    elif args.format == "json":
        print(json.dumps(vended.to_body(), indent=2))
    elif args.format == "dsn":
        print(mysql_url(vended) if is_mysql_family(vended.engine) else conninfo(vended))
    else:
        _libpq_only(vended, "--format env")
        for name, value in libpq_env(vended).items():
            print(f"export {name}={shlex.quote(value)}")
        if vended.dbname is None:  # the login's default database, whatever the shell had
            print("unset PGDATABASE")


def _libpq_only(vended: VendedToken, what: str) -> None:
    """``PG*`` variables and pgpass lines mean nothing to a MySQL-family client: say so."""
    if is_mysql_family(vended.engine):
        _fail(f"{what} is for PostgreSQL; '{vended.database}' is a {vended.engine} database: use "
              f"'rdsvend exec {vended.database} {vended.db_user} -- mariadb' or --format json", 2)


def _cmd_passexec(args: argparse.Namespace) -> None:
    print(_vend(args.url, args.database, args.db_user).token)


def _cmd_pgpass(args: argparse.Namespace) -> None:
    run_pgpass(args)


def _cmd_exec(args: argparse.Namespace) -> None:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _fail("exec needs a command after '--'", 2)
    run_logged_in(command, _vend(args.url, args.database, args.db_user))


def _every(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not value >= 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is below 1 second")
    return value


def build_parser(operator_commands: Sequence[str] = ()) -> argparse.ArgumentParser:
    epilog = None
    if operator_commands:
        epilog = "operator commands (from this checkout): " + ", ".join(sorted(operator_commands))
    parser = _Parser(
        prog="rdsvend",
        description="rdsvend: short-lived RDS IAM database auth tokens, vended by policy.",
        epilog=epilog,
    )
    parser.add_argument("--version", action="version", version=f"rdsvend {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str, run: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("database", metavar="DATABASE", help="the database's name in the access policy")
        sub.add_argument("db_user", metavar="DB_USER", help="the database login")
        sub.add_argument("--url", default=os.environ.get("RDSVEND_URL"), metavar="URL",
                         help="rdsvend API base URL (default: $RDSVEND_URL)")
        sub.set_defaults(run=run)
        return sub

    token = command("token", "vend a token for DB_USER on DATABASE and print it", _cmd_token)
    token.add_argument(
        "--format", choices=_FORMATS, default="token",
        help="token: the token only; json: the whole answer; dsn: a libpq connection string "
        "(MySQL family: a mysql:// URL) with the password; env: export lines for a shell (default: token)",
    )
    command("passexec", "print only the token (for pgAdmin's passexec_cmd)", _cmd_passexec)
    pgpass = command("pgpass", "write or refresh the line for DB_USER on DATABASE in a pgpass file", _cmd_pgpass)
    pgpass.add_argument("--file", metavar="PATH", help="pgpass file to update (default: $PGPASSFILE or ~/.pgpass)")
    pgpass.add_argument("--watch", action="store_true", help="keep running and refresh the line before it expires")
    pgpass.add_argument("--every", type=_every, metavar="SECONDS",
                        help="with --watch: refresh interval (at most half a token's life; default: half)")
    exec_ = command(
        "exec", "run COMMAND with PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSSLMODE PGSSLROOTCERT set "
        "(example: rdsvend exec orders-prod orders_app -- psql -c 'select 1'); for MySQL and MariaDB, "
        "with a private option file instead (rdsvend exec shop shop_app -- mariadb); a client of the other "
        "engine (psql for MariaDB, mariadb for PostgreSQL) is refused", _cmd_exec,
    )
    exec_.add_argument("command", nargs="*", metavar="-- COMMAND ...",
                       help="the program and its arguments, after '--' (options such as --url go before it)")
    add_info_commands(commands, os.environ.get("RDSVEND_URL"))
    add_grant_commands(commands, _Parser)
    return parser


def _version() -> str:
    try:
        return metadata.version("rdsvend")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _operator_commands() -> dict[str, Callable[[list[str]], None]]:
    """Command name -> runner, from every module registered in ``rdsvend.commands``."""
    found: dict[str, Callable[[list[str]], None]] = {}
    for entry in metadata.entry_points(group=OPERATOR_GROUP):
        try:
            module = entry.load()
        except ImportError as exc:
            print(f"rdsvend: warning: operator commands from '{entry.value}' unavailable: {exc}", file=sys.stderr)
            continue
        for name in getattr(module, "COMMANDS", {}):
            found.setdefault(name, module.run)
    return found


def _parse(parser: argparse.ArgumentParser, args: list[str], first: str | None) -> argparse.Namespace:
    """``exec``'s command is everything after the first ``--``; rdsvend parses only what precedes it."""
    if first != "exec":
        return parser.parse_args(args)
    own, command = split_command(args)
    namespace = parser.parse_args(own)
    if command is not None:
        namespace.command = [*namespace.command, *command]
    return namespace


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((arg for arg in args if not arg.startswith("-")), None)
    if first in _CLIENT_COMMANDS:
        operators: dict[str, Callable[[list[str]], None]] = {}
    else:
        operators = _operator_commands()
    if first is not None and first not in _CLIENT_COMMANDS and first in operators:
        try:
            operators[first](args)
        except KeyboardInterrupt:  # pragma: no cover - interactive
            sys.exit(130)
        return
    parser = build_parser(tuple(operators))
    if first is not None and first not in _CLIENT_COMMANDS:
        if first in OPERATOR_COMMANDS:
            _fail(f"'{first}' is an operator command, unavailable here: it comes with a checkout of rdsvend "
                  "(make install)", 2)
        _fail(f"unknown command '{first}' (see 'rdsvend --help')", 2)
    namespace = _parse(parser, args, first)
    if namespace.command is None:
        parser.print_help()
        sys.exit(2)
    try:
        namespace.run(namespace)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
