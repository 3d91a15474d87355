"""``rdsvend audit``: who was given which token, who was refused by the database, and why.

Vends come from the service's audit lines in CloudWatch Logs (``--log-group``, default
``RDSVEND_AUDIT_LOG_GROUPS`` (comma separated), else the local stack's
``/aws/lambda/rdsvend-local``). Refusals come from each database's ``iam-db-auth-error`` log
export, read in the database's account: through its reader role when the policy gives one and
the credentials at hand are elsewhere, else with those credentials. Newest last.

Exit codes: 0 listed, 1 a log could not be read, 2 bad usage or a policy that does not load.
"""
from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import click

from devtools.cli.simulate_cmd import OneLineCommand
from devtools.local.attribution import AUDIT_LOG_GROUP

__all__ = ["audit", "parse_duration", "DEFAULT_AUDIT_GROUP", "AccountLogs"]

DEFAULT_AUDIT_GROUP = AUDIT_LOG_GROUP  # the local stack's (devtools.local.attribution)
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


class AccountLogs:
    """CloudWatch Logs clients: one's own, or a database account's through its reader role."""

    def __init__(self, clients: Any = None) -> None:
        from chalicelib.aws.reader import CallerVantage, ReaderSessions
        from chalicelib.canary.aws import AwsClients

        self._clients = clients or AwsClients(timeout_seconds=10)
        self._caller = CallerVantage(lambda: self._clients.client("sts"))
        self._readers = ReaderSessions(lambda: self._clients.client("sts"),
                                       lambda session: AwsClients(session=session, timeout_seconds=10).client,
                                       session_name="rdsvend-audit-reader", caller=self._caller)

    def own(self, region: str | None = None) -> Any:
        return self._clients.client("logs", region)

    def for_database(self, database: Any, service: str = "logs") -> Any:
        """A client in ``database``'s account; :class:`ProbeError` when its reader role fails."""
        from chalicelib.aws.reader import ReaderRoleError
        from chalicelib.errors import ProbeError

        own_account = None
        if database.reader_role is not None and not database.reader_role_explicit:
            try:
                own_account = self._caller.account()
            except Exception:  # noqa: BLE001 - unknown: read with one's own credentials
                own_account = None
        role = database.reader_role_for(own_account)
        if role is None:
            return self._clients.client(service, database.region)
        try:
            return self._readers.clients(role)(service, database.region)
        except ReaderRoleError as exc:
            raise ProbeError(str(exc), service="sts", code=exc.code) from None


def _default_groups() -> tuple[str, ...]:
    import os

    raw = os.environ.get("RDSVEND_AUDIT_LOG_GROUPS", "")
    return tuple(g.strip() for g in raw.split(",") if g.strip()) or (DEFAULT_AUDIT_GROUP,)


def collect(policy: Any, *, database: str | None, db_user: str | None, since: float,
            groups: tuple[str, ...], logs: AccountLogs) -> tuple[list[Any], list[str]]:
    """The joined entries, and the logs that could not be read (one line each)."""
    from chalicelib.attribution.join import join_events
    from chalicelib.attribution.logs import read_audit, read_refusals
    from chalicelib.errors import ProbeError

    start = time.time() - since
    problems: list[str] = []
    vends: list[Any] = []
    grant_events: list[Any] = []
    for group in groups:
        try:
            found, found_grants, _read = read_audit(logs.own(), group, start)
            vends.extend(found)
            grant_events.extend(found_grants)
        except ProbeError as exc:
            problems.append(f"could not read vends from '{group}': {exc.cause}")
    refusals: list[Any] = []
    names: dict[str, str] = {}
    for db in policy.databases.values():
        if database is not None and db.name != database:
            continue
        if db.kind == "proxy":
            continue
        names[db.identifier] = db.name
        try:
            found_refusals, _read = read_refusals(logs.for_database(db), db, start)
            refusals.extend(found_refusals)
        except ProbeError as exc:
            problems.append(f"could not read the iam-db-auth-error log of '{db.name}': {exc.cause}")
    entries = [e for e in join_events(vends, refusals, names, grant_events)
               if (database is None or e.database == database) and (db_user is None or e.db_user == db_user)]
    return entries, problems


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
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help="access policy file (default: RDSVEND_POLICY, else policies/access.yaml)")
@click.option("--log-group", "log_groups", multiple=True,
              help="a log group with the service's audit lines (repeatable; default: RDSVEND_AUDIT_LOG_GROUPS, "
                   f"else {DEFAULT_AUDIT_GROUP})")
def audit(database: str | None, db_user: str | None, since_text: str, as_json: bool, policy_path: str | None,
          log_groups: tuple[str, ...]) -> None:
    """List vends, refused logins and grant events (requests, decisions, expiries, revokes and the
    sessions ended for them), newest last; each refusal joined to the vend it came from."""
    from devtools.cli.canary_cmd import _fail, _load_policy

    try:
        since = parse_duration(since_text)
    except ValueError as exc:
        _fail(str(exc))
    groups = log_groups or _default_groups()
    where = "--log-group" if log_groups else "RDSVEND_AUDIT_LOG_GROUPS"
    for group in groups:
        if not _LOG_GROUP.fullmatch(group):
            _fail(f"invalid {where} '{group[:80]}': a CloudWatch Logs group name (1-512 of A-Z a-z 0-9 _ - / . #)")
    policy = _load_policy(policy_path)
    if database is not None and database not in policy.databases:
        _fail(f"unknown database '{database}' in {policy.source}")
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
