"""``rdsvend token | pgpass | passexec | exec``: a fresh token where a person or a tool needs it.

Every command makes one SigV4-signed call (the caller's usual AWS credentials) to the
rdsvend URL from ``--url`` or ``RDSVEND_URL``. A refusal from the service is one line on
stderr naming its code, exit 1; bad usage or a missing URL or credentials, exit 2.

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
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import NoReturn

from rdsvend.api import VendApi, VendedToken
from rdsvend.connect import child_env, conninfo, libpq_env
from rdsvend.errors import VendError
from rdsvend.grants import add_grant_commands
from rdsvend.pgpass import default_pgpass_path, write_pgpass_entry

__all__ = ["main", "build_parser", "OPERATOR_GROUP", "OPERATOR_COMMANDS"]

OPERATOR_GROUP = "rdsvend.commands"
_FORMATS = ("token", "json", "dsn", "env")
_LOCAL_ERRORS = frozenset({"no_credentials"})
_CLIENT_COMMANDS = ("token", "passexec", "pgpass", "exec", "grant")
#: Commands for operators, which need the service's checkout (the access policy, AWS reads,
#: the local stack); named here only to say so when they are missing.
OPERATOR_COMMANDS = frozenset({"canary", "doctor", "simulate", "policy", "local", "discover", "audit", "rotate"})


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit 2, like every rdsvend command."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')", 2)


def _fail(message: str, code: int) -> NoReturn:
    print(f"rdsvend: error: {message}", file=sys.stderr)
    sys.exit(code)


def _api(url: str | None) -> VendApi:
    if not url:
        _fail("no rdsvend URL: pass --url or set RDSVEND_URL", 2)
    try:
        return VendApi(url)
    except ValueError as exc:
        _fail(str(exc), 2)


def _vend(url: str | None, database: str, db_user: str) -> VendedToken:
    api = _api(url)
    try:
        return api.vend(database, db_user)
    except VendError as exc:
        _fail(_describe(exc), 2 if exc.code in _LOCAL_ERRORS else 1)


def _describe(exc: VendError) -> str:
    text = f"{exc.code}: {exc.message}"
    if exc.request_id:
        text += f" (request id {exc.request_id})"
    if exc.retry_after is not None and exc.retryable:
        text += f" (retry after {exc.retry_after:g} s)"
    return text


def _cmd_token(args: argparse.Namespace) -> None:
    vended = _vend(args.url, args.database, args.db_user)
    if args.format == "token":
        print(vended.token)
    elif args.format == "json":
        print(json.dumps(vended.to_body(), indent=2))
    elif args.format == "dsn":
        from rdsvend.mysql import is_mysql_family, mysql_url

        print(mysql_url(vended) if is_mysql_family(vended.engine) else conninfo(vended))
    else:
        _libpq_only(vended, "--format env")
        for name, value in libpq_env(vended).items():
            print(f"export {name}={shlex.quote(value)}")
        if vended.dbname is None:  # the login's default database, whatever the shell had
            print("unset PGDATABASE")


def _libpq_only(vended: VendedToken, what: str) -> None:
    """``PG*`` variables and pgpass lines mean nothing to a MySQL-family client: say so."""
    from rdsvend.mysql import is_mysql_family

    if is_mysql_family(vended.engine):
        _fail(f"{what} is for PostgreSQL; '{vended.database}' is a {vended.engine} database: use "
              f"'rdsvend exec {vended.database} {vended.db_user} -- mariadb' or --format json", 2)


def _cmd_passexec(args: argparse.Namespace) -> None:
    print(_vend(args.url, args.database, args.db_user).token)


def _cmd_pgpass(args: argparse.Namespace) -> None:
    if args.every is not None and not args.watch:
        _fail("--every needs --watch", 2)
    target = args.file or str(default_pgpass_path())
    api = _api(args.url)
    failures = 0
    while True:
        try:
            vended = api.vend(args.database, args.db_user)
        except VendError as exc:
            if not args.watch or exc.code in _LOCAL_ERRORS:
                _fail(_describe(exc), 2 if exc.code in _LOCAL_ERRORS else 1)
            failures += 1
            print(f"rdsvend: error: {_describe(exc)}", file=sys.stderr)
            time.sleep(max(exc.retry_after or 0.0, min(60.0, 2.0**failures)))
            continue
        failures = 0
        _libpq_only(vended, "pgpass")
        try:
            written = write_pgpass_entry(
                target, vended.host, vended.port, vended.dbname, vended.db_user, vended.token
            )
        except (OSError, ValueError) as exc:
            detail = getattr(exc, "strerror", "") or exc
            _fail(f"cannot write '{target}': {exc.__class__.__name__}: {detail}", 2)
        expires = vended.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        print(
            f"rdsvend: wrote {vended.host}:{vended.port}:{vended.dbname or '*'}:{vended.db_user} "
            f"to {written} (expires {expires})",
            file=sys.stderr,
        )
        if not args.watch:
            return
        half_life = max(1.0, vended.ttl_seconds / 2)
        time.sleep(min(args.every, half_life) if args.every is not None else half_life)


def _cmd_exec(args: argparse.Namespace) -> None:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _fail("exec needs a command after '--'", 2)
    vended = _vend(args.url, args.database, args.db_user)
    from rdsvend.mysql import is_mysql_family

    if is_mysql_family(vended.engine):
        _exec_mysql(command, vended)
    env = child_env(vended, os.environ)
    try:
        completed = subprocess.run(command, env=env, check=False)
    except FileNotFoundError:
        _fail(f"command not found: '{command[0]}'", 127)
    except PermissionError:
        _fail(f"command not executable: '{command[0]}'", 126)
    code = completed.returncode
    sys.exit(128 - code if code < 0 else code)


def _exec_mysql(command: list[str], vended: VendedToken) -> NoReturn:
    """MySQL family: the login in a private option file for the command's lifetime (rdsvend.mysql)."""
    from rdsvend.mysql import MysqlOptionError, mysql_command

    try:
        with mysql_command(command, vended) as (argv, env):
            try:
                completed = subprocess.run(argv, env=env, check=False)
            except FileNotFoundError:
                _fail(f"command not found: '{command[0]}'", 127)
            except PermissionError:
                _fail(f"command not executable: '{command[0]}'", 126)
    except MysqlOptionError as exc:
        _fail(str(exc), 1)
    code = completed.returncode
    sys.exit(128 - code if code < 0 else code)


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
        "with a private option file instead (rdsvend exec shop shop_app -- mariadb)", _cmd_exec,
    )
    exec_.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
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
    namespace = parser.parse_args(args)
    if namespace.command is None:
        parser.print_help()
        sys.exit(2)
    try:
        namespace.run(namespace)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
