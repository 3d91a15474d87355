"""Canary check ``rds.auth_errors``: did the database refuse this user's IAM logins since the last run?

Reads the database's ``iam-db-auth-error`` log export (CloudWatch Logs, in the database's
account) from the previous run's start on: the start of the previous run made with the same
dependencies when there was one (:meth:`CloudWatchAuthErrorLog.for_run`), else
``RDSVEND_CANARY_INTERVAL_SECONDS`` (default 300, the schedule's 5 minutes) before this run.

- ``pass``: no refused login of this user in that window;
- ``warn``: refusals, counted by error code, with the callers the lines name and what to change;
- ``error``: the log could not be read (never a pass).
A log group that does not exist (the instance does not export the log, or RDS has written
nothing yet) is ``skip``, with the command that turns the export on; ``rdsvend doctor`` warns.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from chalicelib.attribution.logs import read_refusals
from chalicelib.attribution.refusals import FIXES, Refusal, enable_export_command
from chalicelib.canary.model import CheckResult, errored, passed, skipped, warned
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database

__all__ = ["CHECK_ID", "AuthErrorLog", "CloudWatchAuthErrorLog", "InMemoryAuthErrorLog", "check_auth_errors",
           "DEFAULT_INTERVAL_SECONDS"]

CHECK_ID = "rds.auth_errors"
DEFAULT_INTERVAL_SECONDS = 300.0

class AuthErrorLog(Protocol):
    since: float

    def refusals(self, database: Database) -> list[Refusal] | None:
        """Refusals since ``since`` (None: the log group does not exist); :class:`ProbeError`."""


class InMemoryAuthErrorLog:
    def __init__(self, by_database: dict[str, list[Refusal] | None | Exception], since: float = 0.0) -> None:
        self._by_database = by_database
        self.since = since

    def refusals(self, database: Database) -> list[Refusal] | None:
        value = self._by_database.get(database.name, [])
        if isinstance(value, Exception):
            raise value
        return value


class CloudWatchAuthErrorLog:
    """Reads each database's log once per run (targets of one database share the read)."""

    def __init__(self, client_for: Callable[[Database], Any], *, since: float | None = None,
                 interval: float = DEFAULT_INTERVAL_SECONDS, now: Callable[[], float] = time.time) -> None:
        self.client_for = client_for
        self.since = since if since is not None else now() - interval
        self._interval = interval
        self._previous_start: float | None = None
        self._cache: dict[str, list[Refusal] | None | ProbeError] = {}
        self._lock = threading.Lock()

    def for_run(self, started: float) -> CloudWatchAuthErrorLog:
        """The log as one run starting at ``started`` reads it: from the previous run's start (of
        these same deps), else from ``since`` (default ``interval`` before the deps were made); each
        run reads afresh."""
        with self._lock:
            since = self._previous_start if self._previous_start is not None else self.since
            self._previous_start = started
        return CloudWatchAuthErrorLog(self.client_for, since=since, interval=self._interval)

    def refusals(self, database: Database) -> list[Refusal] | None:
        with self._lock:
            if database.name not in self._cache:
                try:
                    found, read = read_refusals(self.client_for(database), database, self.since)
                    self._cache[database.name] = None if read.missing else found
                except ProbeError as exc:
                    self._cache[database.name] = exc
            value = self._cache[database.name]
        if isinstance(value, ProbeError):
            raise value
        return value


def check_auth_errors(database: Database, db_user: str, log: AuthErrorLog | None) -> CheckResult:
    """The ``rds.auth_errors`` verdict for one (database, db user)."""
    if log is None:
        return skipped(CHECK_ID, "not checked: no CloudWatch Logs reader configured")
    if database.kind == "proxy":
        return skipped(CHECK_ID, "not checked: RDS Proxy has no iam-db-auth-error log")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(log.since))
    try:
        found = log.refusals(database)
    except ProbeError as exc:
        return errored(CHECK_ID, f"could not read the iam-db-auth-error log of {database.identifier}: {exc.cause}",
                       "let the canary read CloudWatch Logs in the database's account (logs:FilterLogEvents on "
                       "the log group, through the reader role for other accounts)", cause=exc.cause)
    if found is None:  # nothing proved either way: the export is off, or RDS has not written yet
        return skipped(CHECK_ID, f"not checked: {database.identifier} has no iam-db-auth-error log (turn the export "
                       f"on: {enable_export_command(database.identifier, database.kind)})")
    mine = [r for r in found if r.db_user == db_user]
    if not mine:
        return passed(CHECK_ID, f"no refused IAM login for {db_user} since {since}", since=since)
    codes = Counter(r.code for r in mine)
    callers = sorted({r.caller for r in mine if r.caller})
    summary = ", ".join(f"{n} x {code}" for code, n in codes.most_common())
    named = f"; callers: {', '.join(callers)}" if callers else ""
    fix = "; ".join(FIXES[code][1] if code in FIXES else code for code in codes)
    return warned(CHECK_ID, f"{len(mine)} refused IAM logins for {db_user} since {since}: {summary}{named}",
                  f"{fix} (rdsvend audit --database {database.name} --db-user {db_user} names who got those tokens)",
                  since=since, counts=dict(codes), callers=callers)
