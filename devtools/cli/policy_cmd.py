"""``rdsvend policy check | publish | render``."""
from __future__ import annotations

import sys

import click

from devtools.cli.lazy import LazyGroup

__all__ = ["policy"]


def fail(message: str, code: int = 2) -> None:
    click.echo(f"rdsvend: {message}", err=True)
    sys.exit(code)


@click.group(cls=LazyGroup, lazy_subcommands={"render": "devtools.cli.render_cmd:render"})
def policy() -> None:
    """Validate, publish and render access policies."""


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--service-account", envvar="RDSVEND_SERVICE_ACCOUNT", default=None, metavar="ID",
              help="The 12-digit account the service runs in (default: $RDSVEND_SERVICE_ACCOUNT). "
                   "Without it, databases in other accounts are not checked for a way to read them.")
def check(file: str, service_account: str | None) -> None:
    """Validate FILE: exit 0 when it loads, 2 with the error on one line when it does not."""
    from chalicelib.errors import PolicyLoadError
    from chalicelib.policy.loader import load_policy_file

    try:
        loaded = load_policy_file(file, service_account=service_account or None)
    except PolicyLoadError as exc:
        fail(str(exc))
    click.echo(f"{file}: ok ({len(loaded.databases)} databases, {len(loaded.rules)} rules, "
               f"{len(loaded.targets())} db users)")
    from chalicelib.policy.grant_rules import grant_bypasses

    for warning in grant_bypasses(loaded):
        click.echo(f"warning: {warning}", err=True)
    if not service_account:
        click.echo("note: no --service-account: databases in other accounts were not checked for a reader role",
                   err=True)


@policy.command("publish")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--parameter", required=True, help="SSM parameter name, e.g. /rdsvend/prod/access-policy")
@click.option("--region", default=None, help="AWS region of the parameter")
def publish(file: str, parameter: str, region: str | None) -> None:
    """Validate FILE, then upload it to SSM Parameter Store as PARAMETER."""
    import boto3

    from chalicelib.aws.errors import aws_error
    from chalicelib.errors import PolicyLoadError, PolicyPublishError
    from devtools.deploy.publish import publish_policy

    try:
        version = publish_policy(file, parameter, boto3.client("ssm", region_name=region))
    except PolicyLoadError as exc:
        fail(str(exc))
    except PolicyPublishError as exc:
        fail(str(exc), 2 if exc.input_error else 1)
    except Exception as exc:
        error = aws_error(exc)
        if error is None:
            raise
        fail(f"cannot publish to '{parameter}': {error}", 1)
    click.echo(f"published {file} to {parameter} (version {version})")
