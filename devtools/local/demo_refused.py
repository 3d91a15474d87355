"""The attribution step of ``make demo`` (plugged into :mod:`devtools.local.demo`): a login the
database refuses, the line RDS writes for it, and ``rdsvend doctor`` naming the caller, the
reason and the fix."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from chalicelib.attribution.refusals import log_group_for
from devtools.local.aws import AccountSessions
from devtools.local.canary import local_canary_env
from devtools.local.stack import REPO_ROOT
from devtools.local.state import AUDIT_LOG_GROUP
from rdsvend.connect import connection_params

__all__ = ["refused_caller_step"]

DATABASE = "orders-local"
DB_USER = "orders_app"
SIGNER_POLICY = "rdsvend-signer-rds-connect"


def _rdsvend(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                                                              "AWS_PROFILE")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "rdsvend.cli", *args], cwd=REPO_ROOT, env=full,
                          capture_output=True, text=True, timeout=120, check=False)


def refused_caller_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    import psycopg


    info = demo.stack.info
    account = info.databases[DATABASE]["account"]
    sessions = AccountSessions(info.moto_url, info.region, info.seeded.management_account)
    iam = sessions.client("iam", account)
    env = demo.notes.get("canary_env") or local_canary_env(info)
    say("8. Who was refused, and why? Someone removes the signer role's rds-db:connect policy while an app "
        f"still holds a token vended a moment ago; the app reconnects to {DATABASE} and the database refuses "
        "it. RDS writes a line to the instance's iam-db-auth-error log, naming the signer's session, which "
        "rdsvend named after the caller.")
    vended = demo.api().vend(DATABASE, DB_USER)
    policy_arn = next(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="rdsvend-signer")
                      ["AttachedPolicies"] if p["PolicyName"] == SIGNER_POLICY)
    since_ms = int(time.time() * 1000) - 1000
    iam.detach_role_policy(RoleName="rdsvend-signer", PolicyArn=policy_arn)
    try:
        params = connection_params(vended, {"PGSSLROOTCERT": demo.stack.ca_path})
        try:
            psycopg.connect(**params, connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            say(f"The app sees only: {str(exc).strip().splitlines()[-1][:140]}", 3)
        else:
            raise failed("the database let a token in after the signer lost rds-db:connect")
        logs = sessions.client("logs", account)
        line = ""
        deadline = time.monotonic() + 10
        while not line and time.monotonic() < deadline:
            events = logs.filter_log_events(logGroupName=log_group_for(DATABASE), startTime=since_ms)["events"]
            line = next((e["message"] for e in events if "NotAuthorized" in e["message"]), "")
            time.sleep(0.2)
        if not line:
            raise failed("no NotAuthorized line reached the iam-db-auth-error log")
        say(f"{log_group_for(DATABASE)} (account {account}): {line}", 3)
        say(f"The operator runs: rdsvend doctor {DATABASE} {DB_USER}", 3)
        time.sleep(0.5)  # the audit line's batch
        doctor = _rdsvend({**env, "RDSVEND_AUDIT_LOG_GROUPS": AUDIT_LOG_GROUP}, "doctor", DATABASE, DB_USER)
    finally:
        iam.attach_role_policy(RoleName="rdsvend-signer", PolicyArn=policy_arn)
    out = doctor.stdout
    start = out.find("Refused IAM logins")
    caller = demo.stack.info.seeded.callers["allowed"].arn
    if start < 0 or f"{caller}: " not in out[start:] or "NotAuthorized" not in out[start:]:
        tail = (out[start:] if start >= 0 else out[-800:] + doctor.stderr[-800:]).strip()
        raise failed(f"rdsvend doctor did not name the refused caller (exit {doctor.returncode}):\n{tail}")
    for text in out[start:].strip().splitlines():
        say(text.strip(), 5 if text.startswith("    ") else 3)
    say("The policy is back; 'rdsvend audit --database orders-local' lists the vend and this refusal, joined "
        "by the signer session.", 3)
