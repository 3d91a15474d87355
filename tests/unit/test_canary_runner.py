"""The runner: concurrency bound, per-target deadline, a hanging target never delays the rest."""
from __future__ import annotations

import threading
import time

from chalicelib.canary.checks_iam import InMemoryConnectEvaluator
from chalicelib.canary.checks_kerberos import InMemoryDirectoryRoleFacts
from chalicelib.canary.checks_rds import InMemoryRdsFacts, RdsResource
from chalicelib.canary.model import CheckResult, TargetReport
from chalicelib.canary.runner import run_canary, run_targets, select_targets
from chalicelib.canary.target_run import CanaryDeps, Deadline, TargetRun
from chalicelib.policy.model import AccessPolicy, CanarySettings, Database, DbUser
from tests.support.canary_fakes import CountingTokens, FixedSigner, MemoryConnector, MemoryDatabase
from tests.support.canary_samples import APP, DB, HOST, PORT, RESOURCE, allow, check_of, healthy_roles


def _targets(n: int) -> list[tuple[Database, DbUser]]:
    return [(Database(f"db{i}", "postgres", "us-east-1", "instance", "x", {"u": DbUser("u", "iam")}),
             DbUser("u", "iam")) for i in range(n)]


def test_concurrency_is_bounded_and_order_is_kept() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    three_in = threading.Event()  # the first three checks wait for each other: three run at once

    def check(database: Database, user: DbUser, deadline: Deadline, run: TargetRun) -> TargetReport:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == 3:
                three_in.set()
        three_in.wait(5)  # without it, a slow thread start could let one finish before the third began
        time.sleep(0.02)  # a fourth running at once would have its chance to show here
        with lock:
            active -= 1
        return TargetReport(database.name, user.name, (CheckResult("rds.found", "pass", "ok"),))

    reports = run_targets(_targets(12), check, concurrency=3, timeout_seconds=5)
    assert [r.database for r in reports] == [f"db{i}" for i in range(12)]
    assert peak == 3


def test_a_hanging_target_is_abandoned_as_error_and_the_others_finish() -> None:
    release = threading.Event()

    def check(database: Database, user: DbUser, deadline: Deadline, run: TargetRun) -> TargetReport:
        run.record(CheckResult("rds.found", "pass", "ok"))
        if database.name == "db0":
            with run.lock:
                run.current = "rds.iam_auth_enabled"
            release.wait(30)  # ignores its deadline: only the backstop can end it
        return TargetReport(database.name, user.name, (CheckResult("rds.found", "pass", "ok"),))

    started = time.monotonic()
    try:
        reports = run_targets(_targets(5), check, concurrency=2, timeout_seconds=0.3, grace_seconds=0.1)
    finally:
        release.set()
    elapsed = time.monotonic() - started
    hung = reports[0]
    assert hung.status == "error"
    assert check_of(hung, "rds.found").status == "pass"  # what it proved before hanging is kept
    assert "did not finish within" in check_of(hung, "rds.iam_auth_enabled").message
    assert all(c.status != "pass" for c in hung.checks if c.id != "rds.found")
    assert [r.status for r in reports[1:]] == ["pass"] * 4
    assert elapsed < 10  # bounded by the timeout, not by the 30 s hang


def test_a_crashing_target_is_an_error_report() -> None:
    def check(database: Database, user: DbUser, deadline: Deadline, run: TargetRun) -> TargetReport:
        if database.name == "db1":
            raise RuntimeError("boom")
        return TargetReport(database.name, user.name, (CheckResult("rds.found", "pass", "ok"),))

    reports = run_targets(_targets(3), check, concurrency=2, timeout_seconds=5)
    assert [r.status for r in reports] == ["pass", "error", "pass"]
    assert "RuntimeError" in reports[1].checks[0].message


def test_run_canary_with_a_hanging_database_through_the_real_target_flow() -> None:
    hanging = MemoryDatabase(roles=healthy_roles(), behaviour="hang")
    good = MemoryDatabase(roles=healthy_roles())
    hang_db = Database("hang", "postgres", "us-east-1", "instance", "orders-prod", {"orders_app": APP},
                       host="127.0.0.9", port=6543, dbname="orders")
    policy = AccessPolicy({"orders": DB, "hang": hang_db}, (), CanarySettings(timeout_seconds=0.5, concurrency=4))
    deps = CanaryDeps(
        rds=InMemoryRdsFacts({"orders": RESOURCE, "hang": RESOURCE}),
        connect=InMemoryConnectEvaluator(allow), directory=InMemoryDirectoryRoleFacts({}),
        tokens=CountingTokens(), db=MemoryConnector({(HOST, PORT): good, ("127.0.0.9", 6543): hanging}),
        signer=FixedSigner())
    targets = select_targets(policy, db_user="orders_app")
    try:
        report = run_canary(policy, deps, targets=targets)
    finally:
        hanging.hang.set()
    by_db = {t.database: t for t in report.targets}
    assert by_db["orders"].status == "pass"
    assert by_db["hang"].status == "error"
    assert check_of(by_db["hang"], "db.connect").status == "error"
    assert check_of(by_db["hang"], "rds.endpoint").status == "warn"  # host differs from RDS on purpose
    assert report.summary == {"targets": 2, "pass": 1, "warn": 0, "fail": 0, "error": 1}


def test_one_describe_per_database_per_run_and_fresh_each_run() -> None:
    calls: list[str] = []

    class CountingRds(InMemoryRdsFacts):
        def describe(self, database: Database) -> RdsResource | None:
            calls.append(database.name)
            return super().describe(database)

    policy = AccessPolicy({"orders": DB}, (), CanarySettings(timeout_seconds=5, concurrency=3))
    deps = CanaryDeps(rds=CountingRds({"orders": RESOURCE}), connect=InMemoryConnectEvaluator(allow),
                      directory=InMemoryDirectoryRoleFacts({}), tokens=CountingTokens(),
                      db=MemoryConnector({(HOST, PORT): MemoryDatabase(roles=healthy_roles())}), signer=FixedSigner())
    run_canary(policy, deps)
    run_canary(policy, deps)
    assert calls == ["orders", "orders"]  # three users, one call per run
