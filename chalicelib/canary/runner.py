"""Run every target concurrently, each within its own deadline.

Up to ``concurrency`` targets run at once, each in a daemon thread. A target's budget
(``timeout_seconds``) starts when it starts. Inside, every check respects the remaining time
(libpq ``connect_timeout``, botocore timeouts); as a backstop, a target still running
``grace`` seconds after its deadline is abandoned: its unfinished checks become ``error``
("did not finish within the target's timeout") and its slot goes to the next target, so one
hanging database costs at most its timeout and never delays the others beyond it.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.canary.model import Report, TargetReport
from chalicelib.canary.target import crash_report, run_target
from chalicelib.canary.target_run import CanaryDeps, Deadline, TargetRun
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import ProbeError
from chalicelib.policy.model import AccessPolicy, Database, DbUser

__all__ = ["run_targets", "run_canary", "select_targets", "TargetFn"]

TargetFn = Callable[[Database, DbUser, Deadline, TargetRun], TargetReport]


class _OncePerRun:
    """One Describe call per (account, region, kind, identifier) per run, however many users
    share it (the same identifier in two accounts is two resources)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._answers: dict[tuple[str, ...], tuple[bool, Any]] = {}

    def searched(self, database: Database) -> Any:
        """Where the inner facts looked (see :meth:`RdsFacts.searched`)."""
        where = getattr(self._inner, "searched", None)
        return where(database) if where is not None else None

    def describe(self, database: Database) -> Any:
        key = (database.account or "", database.reader_role or "", database.region, database.kind,
               database.identifier)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._answers:
                try:
                    self._answers[key] = (True, self._inner.describe(database))
                except ProbeError as exc:
                    self._answers[key] = (False, exc)
            ok, value = self._answers[key]
        if not ok:
            raise value
        return value


def run_targets(
    targets: Sequence[tuple[Database, DbUser]],
    check: TargetFn,
    *,
    concurrency: int,
    timeout_seconds: float,
    grace_seconds: float = 1.0,
) -> list[TargetReport]:
    """Run ``check`` for every target; reports come back in the targets' order."""
    n = len(targets)
    concurrency = max(1, min(int(concurrency), n or 1))
    results: list[TargetReport | None] = [None] * n
    runs = [TargetRun(db, user) for db, user in targets]
    deadlines: list[Deadline | None] = [None] * n
    running: set[int] = set()
    cond = threading.Condition()

    def worker(i: int) -> None:
        database, user = targets[i]
        try:
            report = check(database, user, deadlines[i], runs[i])  # type: ignore[arg-type]  # the deadline is set before the worker starts
        except BaseException as exc:  # noqa: BLE001 - a crash is an error report, never a pass
            report = crash_report(database, user, exc)
        with cond:
            if i in running:  # not abandoned
                results[i] = report
                running.discard(i)
                cond.notify_all()

    def reap() -> None:
        """Abandon targets past deadline + grace (called with ``cond`` held)."""
        now = time.monotonic()
        for i in list(running):
            deadline = deadlines[i]
            if deadline is not None and now >= deadline.at + grace_seconds:
                running.discard(i)
                results[i] = runs[i].report(timed_out=timeout_seconds)

    def next_wakeup() -> float:
        pending = [d.at + grace_seconds for d in (deadlines[i] for i in running) if d is not None]
        return max(0.01, min(pending) - time.monotonic()) if pending else 0.5

    with cond:
        for i in range(n):
            while len(running) >= concurrency:
                cond.wait(timeout=next_wakeup())
                reap()
            deadlines[i] = Deadline.after(timeout_seconds)
            running.add(i)
            threading.Thread(target=worker, args=(i,), name=f"canary-{i}", daemon=True).start()
        while running:
            cond.wait(timeout=next_wakeup())
            reap()
    return [r for r in results if r is not None]


def select_targets(policy: AccessPolicy, database: str | None = None,
                   db_user: str | None = None) -> list[tuple[Database, DbUser]]:
    return [(db, user) for db, user in policy.targets()
            if (database is None or db.name == database) and (db_user is None or user.name == db_user)]


def run_canary(
    policy: AccessPolicy,
    deps: CanaryDeps,
    *,
    targets: Sequence[tuple[Database, DbUser]] | None = None,
    concurrency: int | None = None,
    timeout_seconds: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Report:
    """Every (database, db user) of the policy (or ``targets``), checked: the canary's report."""
    chosen = list(policy.targets() if targets is None else targets)
    fresh = getattr(deps.connect, "fresh", None)
    if callable(fresh):  # policies are read once per run, never carried over from the last one
        deps = dataclasses.replace(deps, connect=fresh())
    deps = dataclasses.replace(deps, rds=_OncePerRun(deps.rds))
    timeout = float(timeout_seconds if timeout_seconds is not None else policy.canary.timeout_seconds)
    started = clock.now()
    for_run = getattr(deps.auth_log, "for_run", None)
    if callable(for_run):  # rds.auth_errors: refusals since the previous run of these deps
        deps = dataclasses.replace(deps, auth_log=for_run(started.timestamp()))

    def check(database: Database, user: DbUser, deadline: Deadline, run: TargetRun) -> TargetReport:
        return run_target(database, user, deps, deadline, run)

    reports = run_targets(chosen, check,
                          concurrency=concurrency if concurrency is not None else policy.canary.concurrency,
                          timeout_seconds=timeout)
    return Report(started_at=started, finished_at=clock.now(), targets=tuple(reports))
