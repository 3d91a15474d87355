"""``rdsvend discover``: list the organization's RDS databases (instances, clusters, proxies)
in every account and region asked for, as a ``databases:`` block to paste (yaml), json or a
table.

Exit codes: 0 every account was read, 1 an account (or the organization) could not be read,
2 bad flags (one line on stderr).
"""
from __future__ import annotations

import os
import re
import sys

import click

from devtools.cli.simulate_cmd import BadInput, OneLineCommand

__all__ = ["discover"]


def _split(value: str | None, flag: str, pattern: re.Pattern[str], what: str, limit: int) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not items:
        raise BadInput(f"{flag} names no {what}")
    if len(items) > limit:
        raise BadInput(f"{flag} names {len(items)} {what}s, more than {limit}")
    for item in items:
        if not pattern.fullmatch(item):
            shown = item if len(item) <= 80 else item[:77] + "..."
            raise BadInput(f"invalid {what} '{shown}' in {flag}")
    return items


def _policy_role_name() -> tuple[str | None, str | None]:
    """``(defaults.reader_role_name, note)`` of the policy ``RDSVEND_POLICY`` names, if it loads."""
    if not os.environ.get("RDSVEND_POLICY"):
        return None, None
    from chalicelib.errors import PolicyLoadError, PolicyUnavailableError
    from chalicelib.policy_source import policy_source_from_env

    try:
        return policy_source_from_env().get().reader_role_name, None
    except (PolicyLoadError, PolicyUnavailableError) as exc:
        return None, f"RDSVEND_POLICY did not load ({exc}); its defaults are not used"


@click.command("discover", cls=OneLineCommand)
@click.option("--role-name", default=None, metavar="NAME",
              help="role to assume in each account (default: the policy's defaults.reader_role_name, "
                   "else rdsvend-reader)")
@click.option("--regions", default=None, metavar="R,...", help="regions to list (default: your AWS region)")
@click.option("--accounts", default=None, metavar="ID,...",
              help="only these accounts (default: every active account of the organization)")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json", "table"]), default="yaml", show_default=True)
def discover(role_name: str | None, regions: str | None, accounts: str | None, fmt: str) -> None:
    """List the RDS databases of every account of the organization, ready for the access policy."""
    import boto3

    from chalicelib.aws.arn import ACCOUNT_ID, REGION, ROLE_NAME
    from devtools.discover.scan import DEFAULT_ROLE_NAME, DiscoverError, ScanRequest, scan
    from devtools.discover.shape import to_json, to_table, to_yaml

    if role_name is not None and not ROLE_NAME.fullmatch(role_name):
        raise BadInput(f"invalid role name '{role_name[:80]}' in --role-name")
    wanted_accounts = _split(accounts, "--accounts", ACCOUNT_ID, "account", 1000)
    wanted_regions = _split(regions, "--regions", REGION, "region", 40)
    default_role, note = _policy_role_name()
    if note:
        click.echo(f"rdsvend: note: {note}", err=True)
    session = boto3.session.Session()
    if wanted_regions is None:
        wanted_regions = (session.region_name or "us-east-1",)
    request = ScanRequest(role_name=role_name or default_role or DEFAULT_ROLE_NAME, regions=wanted_regions,
                          accounts=wanted_accounts, default_role_name=default_role,
                          org_role_arn=os.environ.get("RDSVEND_ORG_ROLE_ARN") or None)
    try:
        found = scan(session, request)
    except DiscoverError as exc:
        click.echo(f"rdsvend: {exc}", err=True)
        sys.exit(1)
    render = {"yaml": to_yaml, "json": to_json, "table": to_table}[fmt]
    click.echo(render(found), nl=False if fmt != "json" else True)
    for result in found.accounts:
        if result.status != "ok" and fmt != "json":
            click.echo(f"rdsvend: account {result.account}: {result.error}", err=True)
    sys.exit(0 if found.ok else 1)
