"""``rdsvend canary`` and ``rdsvend doctor``: the canary's checks from a workstation.

Exit codes: 0 nothing failed (warnings are fine), 1 something failed or errored, 2 bad usage
or a policy that does not load. Errors are one line on stderr.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # annotations only: the canary is imported when a command runs
    from chalicelib.canary.model import Report
    from chalicelib.policy.model import AccessPolicy, Database, DbUser

from devtools.cli.common import fail, load_policy, policy_option, quiet_service_logs

__all__ = ["canary", "doctor"]


def _run(policy: AccessPolicy, targets: Sequence[tuple[Database, DbUser]], timeout: float | None,
         concurrency: int | None) -> Report:
    from chalicelib.canary.factory import canary_deps

    quiet_service_logs()
    from chalicelib.canary.runner import run_canary

    deps = canary_deps(policy)
    return run_canary(policy, deps, targets=targets, timeout_seconds=timeout, concurrency=concurrency)


_json_option = click.option("--json", "as_json", is_flag=True,
                            help="print the report as JSON (per target: status and every check)")
_timeout_option = click.option("--timeout", type=click.FloatRange(min=0.5, max=900), default=None,
                               help="per-target timeout in seconds (default: canary.timeout_seconds)")


@click.command("canary")
@policy_option
@_json_option
@_timeout_option
@click.option("--concurrency", type=click.IntRange(min=1, max=256), default=None,
              help="targets checked at once (default: canary.concurrency)")
@click.option("--database", default=None, help="only this database")
def canary(policy_path: str | None, as_json: bool, timeout: float | None, concurrency: int | None,
           database: str | None) -> None:
    """Check every (database, db user) of the policy: RDS, IAM, SCPs, a real TLS login."""
    from chalicelib.canary.explain import explain_target, render_table, summary_line
    from chalicelib.canary.runner import select_targets

    policy = load_policy(policy_path)
    if database is not None and database not in policy.databases:
        fail(f"unknown database '{database}' in {policy.source}")
    report = _run(policy, select_targets(policy, database), timeout, concurrency)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        click.echo(render_table(report.targets))
        click.echo()
        click.echo(summary_line(report.summary))
        explained = [(t, explain_target(t)) for t in report.targets if t.status in ("fail", "error")]
        for target, text in explained:
            click.echo()
            click.echo(f"== {target.key} ({target.status}) ==")
            click.echo(text)
    sys.exit(0 if report.ok else 1)


@click.command("doctor")
@click.argument("database")
@click.argument("db_user")
@policy_option
@_json_option
@_timeout_option
def doctor(database: str, db_user: str, policy_path: str | None, as_json: bool,
           timeout: float | None) -> None:
    """Run every check for DATABASE / DB_USER and explain each failure in words."""
    from chalicelib.canary.explain import explain_target, render_checks

    policy = load_policy(policy_path)
    db = policy.databases.get(database)
    if db is None:
        fail(f"unknown database '{database}' in {policy.source}")
    user = db.users.get(db_user)
    if user is None:
        fail(f"unknown db user '{db_user}' of database '{database}' in {policy.source}")
    report = _run(policy, [(db, user)], timeout, 1)
    target = report.targets[0]
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        sys.exit(0 if report.ok else 1)
    click.echo(f"{target.key} ({user.auth} auth{', tier ' + user.tier if user.tier else ''}): "
               f"{target.status.upper()}")
    click.echo()
    click.echo(render_checks(target))
    text = explain_target(target)
    if text:
        click.echo()
        click.echo(text)
    else:
        click.echo()
        click.echo("Nothing to fix: AWSCURRENT of its secret logs in over TLS verify-full." if user.auth == "password"
                   else "Nothing to fix: a freshly signed token logs in over TLS verify-full.")
    if db.is_dsql:
        click.echo()
        click.echo("Aurora DSQL has no iam-db-auth-error log for rdsvend to read: the checks above explain a refusal.")
    elif user.auth == "iam":  # who RDS refused in the last hour, and why (devtools.cli.doctor_refusals)
        from devtools.cli.doctor_refusals import refusal_report

        refusals = refusal_report(policy, db, db_user)
        click.echo()
        click.echo("\n".join(refusals.lines))
        if refusals.status == "error":
            sys.exit(1)
    sys.exit(0 if report.ok else 1)
