"""``rdsvend policy render FILE``: the least-privilege signer IAM policy and the SCP statement
that allows it, and for every RDS Proxy database the policy its proxy's role needs (leg 2:
``rds-db:connect`` on the target's resource id, or read access to the users' secrets).
Exit 0 on success, 2 when FILE does not load or RDS cannot resolve a
database (one line on stderr). A database in another account is read through its reader role;
one that gives ``resource_id`` (and whose account is known) is not read at all."""
from __future__ import annotations

import json
import os

import click

from devtools.cli.simulate_cmd import BadInput, OneLineCommand

__all__ = ["render"]


@click.command(cls=OneLineCommand)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--only", type=click.Choice(["all", "signer", "scp", "proxy-role"]), default="all",
              show_default=True,
              help="signer: the signer policy document alone (one signer only); scp: the SCP statement alone; "
                   "proxy-role: the proxy role's policy alone (one proxy database only).")
def render(file: str, only: str) -> None:
    """Print the IAM policy rdsvend's signer needs for FILE, and the SCP statement allowing it.

    With RDS Proxy databases, two labelled legs: leg 1, the signer's rds-db:connect on the
    proxy's dbuser:prx-.../USER ARNs; leg 2, what each proxy's own role needs to log in to
    its target."""

    from chalicelib.aws.probe import AwsClients
    from chalicelib.canary.accounts import AccountReaders
    from chalicelib.errors import IamFetchError, PolicyLoadError, ProbeError
    from chalicelib.iam.render import render_policies, render_proxy_roles
    from chalicelib.policy.loader import load_policy_file

    try:
        policy = load_policy_file(file, service_account=os.environ.get("RDSVEND_SERVICE_ACCOUNT") or None)
    except PolicyLoadError as exc:
        raise BadInput(str(exc)) from None
    clients = AwsClients()
    readers = AccountReaders(policy, clients)
    try:
        rendered = render_policies(policy, lambda region: clients.client("rds", region),
                                   rds_for=lambda db: readers.client(db, "rds"), searched=readers.searched)
        legs = render_proxy_roles(policy, lambda region: clients.client("rds", region),
                                  rds_for=lambda db: readers.client(db, "rds"), searched=readers.searched)
    except IamFetchError as exc:
        raise BadInput(f"{file}: {exc}") from None
    except ProbeError as exc:
        raise BadInput(f"{file}: {exc.cause}") from None
    if only == "scp":
        out = rendered.scp_statement
    elif only == "signer":
        if len(rendered.signer_policies) != 1:
            names = ", ".join(rendered.signer_policies)
            raise BadInput(f"{file}: --only signer needs one signer, the policy has several ({names})")
        out = next(iter(rendered.signer_policies.values()))
    elif only == "proxy-role":
        if len(legs) != 1:
            raise BadInput(f"{file}: --only proxy-role needs exactly one proxy database, the policy has {len(legs)}")
        out = legs[0].document()
    else:
        out = rendered.to_dict()
        if legs:
            for entry in out["signer_policies"]:
                entry["leg"] = 1
            out["proxy_role_policies"] = [leg.to_dict() for leg in legs]
    click.echo(json.dumps(out, indent=2))
