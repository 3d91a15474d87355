"""The canary's two steps of ``make demo`` (plugged into :mod:`devtools.local.demo`):
run the canary over the local policy, then break an SCP and let ``rdsvend doctor`` name it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from chalicelib.canary.explain import render_table, summary_line
from chalicelib.canary.runner import run_canary
from chalicelib.observability import logger
from chalicelib.policy.loader import load_policy_file
from devtools.local.aws import AccountSessions
from devtools.local.canary import local_canary_deps, local_canary_env
from devtools.local.stack import REPO_ROOT

__all__ = ["canary_step", "broken_scp_step"]

DATABASE = "orders-local"
DB_USER = "orders_app"


def canary_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    info = demo.stack.info
    say("6. Canary: for every (database, db user) in the policy, check RDS (exists, IAM auth on, endpoint), "
        "IAM (the signer may rds-db:connect on the exact dbuser ARN) and every SCP from the root down, then "
        "log in for real with a freshly signed token over TLS verify-full and read the role catalogs.")
    logger.setLevel("WARNING")
    policy = load_policy_file(info.policy_path)
    env = local_canary_env(info)
    demo.notes["canary_env"] = env
    report = run_canary(policy, local_canary_deps(info, policy, env=env))
    say(render_table(report.targets), 3)
    say(summary_line(report.summary), 3)
    app = next(t for t in report.targets if t.db_user == DB_USER)
    connect = app.check("db.connect")
    latency = connect.details.get("latency_ms") if connect is not None else None
    not_green = [t for t in report.targets if t.status not in ("pass", "warn")]
    if not_green:
        first = not_green[0]
        raise failed(f"the baseline is not green before anything is broken: {first.key} is {first.status} "
                     f"({first.problems[0].id}: {first.problems[0].message})")
    accounts = sorted({str(info.databases[db.identifier]["account"]) for db in policy.databases.values()
                       if db.identifier in info.databases})
    say(f"All green before anything is broken: {len(report.targets)} targets in accounts {', '.join(accounts)}, "
        f"the Kerberos user's instance joined to its directory; {app.key}'s login took {latency} ms.", 3)
    operator = _rdsvend(info.env("operator"), "canary")
    summary = operator.stdout.strip().splitlines()[-1] if operator.stdout.strip() else operator.stderr.strip()
    if operator.returncode != 0:
        raise failed(f"the operator's rdsvend canary exits {operator.returncode}: {summary}")
    say("An operator at a terminal sees the same: eval \"$(rdsvend local env --as operator)\"; rdsvend canary "
        f"-> exit 0, {summary}", 3)


def _rdsvend(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``rdsvend ARGS`` in a shell with ``env`` exported (as after ``eval "$(rdsvend local env)"``)."""

    full = {k: v for k, v in os.environ.items() if k not in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                                                              "AWS_PROFILE")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "rdsvend.cli", *args],
                          cwd=REPO_ROOT, env=full, capture_output=True, text=True, timeout=120, check=False)


def _doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _rdsvend(env, "doctor", DATABASE, DB_USER)


def broken_scp_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    info = demo.stack.info
    seeded = info.seeded
    ou = seeded.units.get("Services")
    say("7. A broken SCP, diagnosed: someone attaches an SCP that denies rds-db:* to the Services OU. Tokens "
        "still sign fine, but every login now fails with RDS's unhelpful \"PAM authentication failed for "
        f"user\". The operator, in the shell of rdsvend local env --as operator, runs: rdsvend doctor {DATABASE} "
        f"{DB_USER}")
    orgs = AccountSessions(info.moto_url, info.region, seeded.management_account).client(
        "organizations", seeded.management_account)
    doc = {"Version": "2012-10-17", "Statement": [
        {"Sid": "NoDatabaseLogins", "Effect": "Deny", "Action": "rds-db:*", "Resource": "*"}]}
    created = orgs.create_policy(Name="DenyRdsDb", Description="demo: a broken SCP",
                                 Type="SERVICE_CONTROL_POLICY", Content=json.dumps(doc))
    policy_id = created["Policy"]["PolicySummary"]["Id"]
    orgs.attach_policy(PolicyId=policy_id, TargetId=ou)
    try:
        broken = _doctor(info.env("operator"))
    finally:
        orgs.detach_policy(PolicyId=policy_id, TargetId=ou)
        orgs.delete_policy(PolicyId=policy_id)
    for line in broken.stdout.rstrip().splitlines():
        print("   " + line, flush=True)
    if broken.returncode != 1 or policy_id not in broken.stdout:
        raise failed(f"rdsvend doctor did not name SCP {policy_id} (exit {broken.returncode})")
    say(f"Exit status {broken.returncode}: the doctor names SCP {policy_id}, its statement and the OU it is "
        "attached to. Detaching it ...", 3)
    fixed = _doctor(info.env("operator"))
    if fixed.returncode != 0:
        raise failed(f"rdsvend doctor still fails after the SCP was detached (exit {fixed.returncode})")
    say(f"rdsvend doctor {DATABASE} {DB_USER} -> exit 0: "
        f"{fixed.stdout.splitlines()[0] if fixed.stdout else ''}", 3)
