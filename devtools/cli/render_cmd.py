"""``rdsvend policy render FILE``: the least-privilege signer IAM policy and the SCP statement
that allows it (SPEC 2). Exit 0 on success, 2 when FILE does not load or RDS cannot resolve a
database (one line on stderr)."""
from __future__ import annotations

import json

import click

from devtools.cli.simulate_cmd import BadInput, OneLineCommand

__all__ = ["render"]


@click.command(cls=OneLineCommand)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--only", type=click.Choice(["all", "signer", "scp"]), default="all", show_default=True,
              help="signer: the signer policy document alone (one signer only); scp: the SCP statement alone.")
def render(file: str, only: str) -> None:
    """Print the IAM policy rdsvend's signer needs for FILE, and the SCP statement allowing it."""
    from chalicelib.aws.clients import default_client_factory
    from chalicelib.errors import IamFetchError, PolicyLoadError
    from chalicelib.iam.render import render_policies
    from chalicelib.policy.loader import load_policy_file

    try:
        policy = load_policy_file(file)
    except PolicyLoadError as exc:
        raise BadInput(str(exc)) from None
    clients = default_client_factory()
    try:
        rendered = render_policies(policy, lambda region: clients("rds", region))
    except IamFetchError as exc:
        raise BadInput(f"{file}: {exc}") from None
    if only == "scp":
        out = rendered.scp_statement
    elif only == "signer":
        if len(rendered.signer_policies) != 1:
            names = ", ".join(rendered.signer_policies)
            raise BadInput(f"{file}: --only signer needs one signer, the policy has several ({names})")
        out = next(iter(rendered.signer_policies.values()))
    else:
        out = rendered.to_dict()
    click.echo(json.dumps(out, indent=2))
