"""The part of ``rdsvend doctor`` that reads the database's ``iam-db-auth-error`` log.

For the last hour it names each refused caller (the vend the refused token came from, joined
by the signer session or by database user and time), the reason RDS gave, and what to change.
When the instance does not export that log it says so and gives the command that turns the
export on. Anything it cannot read is said as such, never as "no refusals".
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from chalicelib.attribution.refusals import FIXES, enable_export_command
from chalicelib.aws.rds import describe_resource
from devtools.cli.audit_logs import AccountLogs, audit_log_groups, collect

__all__ = ["RefusalReport", "refusal_report"]

WINDOW = 3600.0

@dataclass(frozen=True)
class RefusalReport:
    status: str  # pass (none), warn (refusals, or the export is off), error (could not read)
    lines: tuple[str, ...]


def _export_on(logs: Any, database: Any) -> bool | None:
    """Does RDS export this instance's iam-db-auth-error log? None when it cannot tell."""
    try:
        resource = describe_resource(logs.for_database(database, "rds"), database)
    except Exception:  # noqa: BLE001 - unknown; the log read below decides
        return None
    exports = resource.raw.get("EnabledCloudwatchLogsExports") or []
    return "iam-db-auth-error" in exports


def refusal_report(policy: Any, database: Any, db_user: str, *, logs: Any = None,
                   groups: tuple[str, ...] | None = None) -> RefusalReport:
    """Refused logins of ``db_user`` on ``database`` in the last hour, explained."""
    if database.kind == "proxy":
        return RefusalReport("pass", ("RDS Proxy has no iam-db-auth-error log; nothing to read",))
    logs = logs or AccountLogs()
    if _export_on(logs, database) is False:
        return RefusalReport("warn", (
            f"{database.name} does not export its iam-db-auth-error log, so refused IAM logins are not recorded.",
            f"  fix: {enable_export_command(database.identifier, database.kind)}",
        ))
    entries, problems = collect(policy, database=database.name, db_user=db_user, since=WINDOW,
                                groups=groups or audit_log_groups(), logs=logs)
    refusal_problems = [p for p in problems if "iam-db-auth-error" in p]
    if refusal_problems:
        return RefusalReport("error", tuple(refusal_problems))
    refused = [e for e in entries if e.kind == "refusal"]
    if not refused:
        return RefusalReport("pass", (f"No refused IAM logins for {db_user} in the last hour.",))
    counts: Counter[tuple[str, str]] = Counter()
    for entry in refused:
        counts[(_who(entry), entry.refusal.code)] += 1
    lines = [f"Refused IAM logins for {db_user} in the last hour ({len(refused)}):"]
    for (who, code), n in sorted(counts.items(), key=lambda item: -item[1]):
        reason, fix = FIXES.get(code, (code, "see the RDS documentation for this error code"))
        lines.append(f"  {who}: {n} x {code}: {reason}")
        lines.append(f"    fix: {fix}")
    lines.extend(f"  note: {p}" for p in problems)
    return RefusalReport("warn", tuple(lines))


def _who(entry: Any) -> str:
    joined = entry.joined
    if joined is not None and joined.principal:
        return joined.principal if entry.match == "session" else f"{joined.principal} (likely: by user and time)"
    caller = entry.refusal.caller
    return caller or "an unknown caller (the line names no caller and no vend matches)"
