"""What ``rdsvend audit`` and ``rdsvend doctor`` read: CloudWatch Logs in one's own account (the
service's audit lines) and in each database's account (its ``iam-db-auth-error`` export, through
its reader role), joined into vends and refusals."""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from chalicelib.attribution.join import join_events
from chalicelib.attribution.logs import read_audit, read_refusals
from chalicelib.aws.probe import AwsClients
from chalicelib.aws.reader import CallerVantage, ReaderRoleError, ReaderSessions
from chalicelib.errors import ProbeError

__all__ = ["AccountLogs", "audit_log_groups", "collect"]


class AccountLogs:
    """CloudWatch Logs clients: one's own, or a database account's through its reader role."""

    def __init__(self, clients: Any = None) -> None:
        self._clients = clients or AwsClients(timeout_seconds=10)
        self._caller = CallerVantage(lambda: self._clients.client("sts"))
        self._readers = ReaderSessions(lambda: self._clients.client("sts"),
                                       lambda session: AwsClients(session=session, timeout_seconds=10).client,
                                       session_name="rdsvend-audit-reader", caller=self._caller)

    def own(self, region: str | None = None) -> Any:
        return self._clients.client("logs", region)

    def for_database(self, database: Any, service: str = "logs") -> Any:
        """A client in ``database``'s account; :class:`ProbeError` when its reader role fails."""
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


def audit_log_groups(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``RDSVEND_AUDIT_LOG_GROUPS`` (comma separated): the log groups with the service's audit
    lines (the vend function's, ``/aws/lambda/<function name>``). No default: the local stack's
    shell sets it (``rdsvend local env``)."""
    raw = (os.environ if environ is None else environ).get("RDSVEND_AUDIT_LOG_GROUPS", "")
    return tuple(g.strip() for g in raw.split(",") if g.strip())


def collect(policy: Any, *, database: str | None, db_user: str | None, since: float,
            groups: tuple[str, ...], logs: AccountLogs) -> tuple[list[Any], list[str]]:
    """The joined entries, and the logs that could not be read (one line each)."""
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
