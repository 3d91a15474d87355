"""``rdsvend grant request|list|approve|deny|revoke``: just-in-time access from a terminal.

Each prints one line per grant (or the grant as the service shows it with ``--json``) and exits
0 on success, 1 when the service refuses (not allowed, no such grant, already decided), 2 on
bad usage (a bad ``--for``, an id that cannot be one, input the service calls invalid, no URL
or credentials).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from rdsvend.api import VendApi
from rdsvend.errors import VendError

__all__ = ["add_grant_commands", "parse_for", "grant_line"]

_DURATION = re.compile(r"(?:(\d{1,4})d)?(?:(\d{1,5})h)?(?:(\d{1,6})m)?(?:(\d{1,7})s)?")
_GRANT_ID = re.compile(r"g-[0-9a-f]{20}")
#: service error codes that mean the command line was wrong, not that the service said no
_USAGE_CODES = frozenset({"invalid_request", "no_credentials"})
_MAX_FOR = 7 * 86400


def _fail(message: str, code: int) -> NoReturn:
    print(f"rdsvend: error: {message}", file=sys.stderr)
    sys.exit(code)


def parse_for(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``1h30m``, ``1d`` or plain seconds -> seconds."""
    text = text.strip()
    if text.isdigit() and len(text) <= 7:
        seconds = int(text)
    else:
        match = _DURATION.fullmatch(text) if len(text) <= 24 else None
        if match is None or not any(match.groups()):
            raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a duration such as 30m, 2h or 1h30m")
        d, h, m, s = (int(g or 0) for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if not 0 < seconds <= _MAX_FOR:
        raise argparse.ArgumentTypeError(f"'{text[:40]}' is not between 1 second and 7 days")
    return seconds


def _grant_id(text: str) -> str:
    if not _GRANT_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a grant id (g- and 20 hex digits)")
    return text


def grant_line(grant: Mapping[str, Any]) -> str:
    """One line: id, state, what, who, until when, why."""
    parts = [str(grant.get("id")), f"{grant.get('state', '?'):<8}", f"{grant.get('database')}/{grant.get('db_user')}",
             f"requester {grant.get('requester')}"]
    if grant.get("approver"):
        parts.append(f"approver {grant['approver']}")
    if grant.get("ends_at"):
        parts.append(f"ends {grant['ends_at']}")
    elif grant.get("duration_seconds"):
        parts.append(f"for {grant['duration_seconds']}s")
    reason = str(grant.get("reason") or "").replace("\n", " ")
    return " ".join(parts) + (f": {reason[:120]}" if reason else "")


def _call(args: argparse.Namespace, method: str, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    if not args.url:
        _fail("no rdsvend URL: pass --url or set RDSVEND_URL", 2)
    try:
        return VendApi(args.url).call(method, path, payload)
    except ValueError as exc:
        _fail(str(exc), 2)
    except VendError as exc:
        text = f"{exc.code}: {exc.message}" + (f" (request id {exc.request_id})" if exc.request_id else "")
        _fail(text, 2 if exc.code in _USAGE_CODES else 1)


def _show(args: argparse.Namespace, answer: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    grants = answer["grants"] if "grants" in answer else [answer]
    for grant in grants:
        print(grant_line(grant))
    if not grants:
        print("no grants")


def _request(args: argparse.Namespace) -> None:
    if not args.reason.strip():
        _fail("--reason must say why (it is shown to the approvers)", 2)
    _show(args, _call(args, "POST", "/v1/grants", {"database": args.database, "db_user": args.db_user,
                                                   "reason": args.reason, "duration_seconds": args.duration}))


def _list(args: argparse.Namespace) -> None:
    _show(args, _call(args, "GET", "/v1/grants"))


def _action(verb: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        _show(args, _call(args, "POST", f"/v1/grants/{args.grant_id}/{verb}"))

    return run


def add_grant_commands(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``grant`` and its subcommands to the client's subparsers."""
    grant = commands.add_parser("grant", help="ask for, decide, revoke and list just-in-time grants",
                                description="Just-in-time access: grants with a reason, an approver and an end.")
    subs = grant.add_subparsers(dest="grant_command", metavar="ACTION", parser_class=parser_class, required=True)

    def sub(name: str, help_text: str, run: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subs.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--url", default=os.environ.get("RDSVEND_URL"), metavar="URL",
                            help="rdsvend API base URL (default: $RDSVEND_URL)")
        parser.add_argument("--json", action="store_true", help="print the grant(s) as the service shows them")
        parser.set_defaults(run=run)
        return parser

    request = sub("request", "ask for DB_USER on DATABASE for a while, with a reason", _request)
    request.add_argument("database", metavar="DATABASE")
    request.add_argument("db_user", metavar="DB_USER")
    request.add_argument("--for", dest="duration", type=parse_for, required=True, metavar="DURATION",
                         help="how long, e.g. 30m, 2h, 1h30m (at most the rule's max_grant_seconds)")
    request.add_argument("--reason", required=True, help="why (at most 1024 bytes; approvers see it)")
    sub("list", "your grants, and the pending ones you may approve", _list)
    for verb, text in (("approve", "approve a pending grant (an approver of its rule)"),
                       ("deny", "refuse a pending grant (an approver of its rule)"),
                       ("revoke", "end a pending or live grant now; its db user's sessions end")):
        sub(verb, text, _action(verb)).add_argument("grant_id", metavar="ID", type=_grant_id)
