"""``rdsvend whoami`` and ``rdsvend databases``: who the service takes you for, what you may ask for.

They are the API's ``GET /v1/whoami`` and ``GET /v1/databases``; ``--json`` prints the answer
as the service gave it. A caller told ``forbidden`` finds here whether the database or user
name was wrong (not listed) or the caller is not who it thinks it is.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from rdsvend.cliutil import describe, exit_code, fail, make_api
from rdsvend.errors import VendError

__all__ = ["INFO_COMMANDS", "add_info_commands"]

INFO_COMMANDS = ("whoami", "databases")


def _call(args: argparse.Namespace, path: str) -> dict[str, Any]:
    api = make_api(args.url)
    try:
        return api.call("GET", path)
    except VendError as exc:
        fail(describe(exc, args.url), exit_code(exc))


def _cmd_whoami(args: argparse.Namespace) -> None:
    answer = _call(args, "/v1/whoami")
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    for key in ("principal", "arn", "account", "org_id", "session"):
        value = answer.get(key)
        print(f"{key + ':':<11}{'-' if value in (None, '') else value}")


def _cmd_databases(args: argparse.Namespace) -> None:
    answer = _call(args, "/v1/databases")
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    databases = answer.get("databases")
    if not isinstance(databases, list) or not databases:
        print("no database: the access policy lets this caller ask for none ('rdsvend whoami': who you are)")
        return
    rows = [("DATABASE", "ENGINE", "ENDPOINT", "DBNAME", "DB_USERS")]
    for db in databases:
        if not isinstance(db, dict):
            continue
        users = db.get("db_users")
        rows.append((str(db.get("database", "")), str(db.get("engine", "")),
                     f"{db.get('host', '')}:{db.get('port', '')}", str(db.get("dbname") or "*"),
                     ",".join(str(u) for u in users) if isinstance(users, list) else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4])


def add_info_commands(commands: Any, url_default: str | None) -> None:
    """Add ``whoami`` and ``databases`` to the ``rdsvend`` subparsers ``commands``."""
    runners: dict[str, tuple[str, Callable[[argparse.Namespace], None]]] = {
        "whoami": ("who the service takes you for (GET /v1/whoami)", _cmd_whoami),
        "databases": ("the databases and users you may ask tokens for (GET /v1/databases)", _cmd_databases),
    }
    for name, (help_text, run) in runners.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--url", default=url_default, metavar="URL",
                         help="rdsvend API base URL (default: $RDSVEND_URL)")
        sub.add_argument("--json", action="store_true", help="print the service's answer as JSON")
        sub.set_defaults(run=run)
