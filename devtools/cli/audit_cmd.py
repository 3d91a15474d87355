"""``rdsvend audit``: who was given which token, who was refused by the database, and why.

Vends come from the service's audit lines in CloudWatch Logs (``--log-group``, else
``RDSVEND_AUDIT_LOG_GROUPS``, comma separated: the vend function's log group; the local
stack's shell sets it). Refusals come from each database's ``iam-db-auth-error`` log
export, read in the database's account: through its reader role when the policy gives one and
the credentials at hand are elsewhere, else with those credentials. Newest last.

Exit codes: 0 listed, 1 a log could not be read, 2 bad usage or a policy that does not load.
"""
from __future__ import annotations

import json
import re
import sys
from typing import Any

import click

from devtools.cli.audit_logs import AccountLogs, audit_log_groups, collect
from devtools.cli.common import fail, load_policy, policy_option
from devtools.cli.simulate_cmd import OneLineCommand

__all__ = ["audit", "parse_duration"]

_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,7})s)?")
_MAX_SINCE = 90 * 86400
_LOG_GROUP = re.compile(r"[A-Za-z0-9_\-/.#]{1,512}")


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1d``, ``1h30m`` -> seconds; ValueError naming the value."""
    match = _DURATION.fullmatch(text.strip()) if text and len(text) <= 32 else None
    if match is None or not any(match.groups()):
        raise ValueError(f"invalid --since '{text[:40]}': use a duration such as 30m, 2h or 1d")
    d, h, m, s = (int(g or 0) for g in match.groups())
    seconds = float(d * 86400 + h * 3600 + m * 60 + s)
    if not 0 < seconds <= _MAX_SINCE:
        raise ValueError(f"invalid --since '{text}': between 1s and 90d")
    return seconds


def _grant_line(d: dict[str, Any]) -> str:
    what = f"{d['database']}/{d['db_user']}"
    if d["event"] == "session_ended":
        return f"{d['at']}  session  ended    {what} session {d['session_id']} ({d['why']})"
    who = d["principal"] or "(time)"
    tail = f" grant {d['grant_id']}" if d["grant_id"] else ""
    if d["action"] == "requested":
        tail += f" by {d['requester']}"
    elif d["action"] == "approved" and d["ends_at"]:
        tail += f" until {d['ends_at']}"
    elif d["action"] == "refused":
        tail += f" ({d['why']})"
    return f"{d['at']}  grant    {d['action']:<9} {who} -> {what}{tail}"


def _line(entry: Any) -> str:
    d = entry.to_dict()
    if entry.kind == "grant":
        return _grant_line(d)
    if entry.kind == "vend":
        who = d["principal"] or "?"
        what = f"{d['database']}/{d['db_user']}"
        tail = f"rule {d['rule']}, expires {d['expires_at']}" if d["decision"] == "allow" else f"({d['reason']})"
        return f"{d['at']}  vend     {d['decision']:<5} {who} -> {what} {tail}"
    joined = d["vend"]
    by = (f"token vended to {joined['principal']} at {joined['at']} (rule {joined['rule']}"
          f"{', matched by db user and time' if d['match'] == 'db_user' else ''})") if joined else "no matching vend"
    return f"{d['at']}  refusal  {d['error_code']:<13} {d['database']}/{d['db_user']}: {by}"


@click.command("audit", cls=OneLineCommand)
@click.option("--database", default=None, help="only this database (its policy name)")
@click.option("--db-user", "db_user", default=None, help="only this database user")
@click.option("--since", "since_text", default="1h", show_default=True, help="how far back: 30m, 2h, 1d")
@click.option("--json", "as_json", is_flag=True, help="print JSON: {\"entries\": [...], \"problems\": [...]}")
@policy_option
@click.option("--log-group", "log_groups", multiple=True,
              help="a log group with the service's audit lines (repeatable; default: RDSVEND_AUDIT_LOG_GROUPS)")
def audit(database: str | None, db_user: str | None, since_text: str, as_json: bool, policy_path: str | None,
          log_groups: tuple[str, ...]) -> None:
    """List vends, refused logins and grant events (requests, decisions, expiries, revokes and the
    sessions ended for them), newest last; each refusal joined to the vend it came from."""
    try:
        since = parse_duration(since_text)
    except ValueError as exc:
        fail(str(exc))
    groups = log_groups or audit_log_groups()
    where = "--log-group" if log_groups else "RDSVEND_AUDIT_LOG_GROUPS"
    if not groups:
        fail("no log group with the service's audit lines: give --log-group or set RDSVEND_AUDIT_LOG_GROUPS "
             "(the vend function's log group, /aws/lambda/<function name>)")
    for group in groups:
        if not _LOG_GROUP.fullmatch(group):
            fail(f"invalid {where} '{group[:80]}': a CloudWatch Logs group name (1-512 of A-Z a-z 0-9 _ - / . #)")
    policy = load_policy(policy_path)
    if database is not None and database not in policy.databases:
        fail(f"unknown database '{database}' in {policy.source}")
    entries, problems = collect(policy, database=database, db_user=db_user, since=since,
                                groups=groups, logs=AccountLogs())
    if as_json:
        click.echo(json.dumps({"entries": [e.to_dict() for e in entries], "problems": problems}, indent=2))
    else:
        for entry in entries:
            click.echo(_line(entry))
        if not entries:
            click.echo(f"nothing in the last {since_text}")
        for problem in problems:
            click.echo(f"rdsvend: {problem}", err=True)
    sys.exit(1 if problems else 0)
