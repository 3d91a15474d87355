"""Clients into the seeded local world (moto server): as the management account, as an
operator who assumed OrganizationAccountAccessRole in a member account, and as one of the
world's own keys; the local access policy as the stack writes it (the template with the
world's users)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3

from devtools.local.provision import merged_access_text
from devtools.local.sessions import Keys
from devtools.local.world import load_world

__all__ = ["REPO", "LOCAL_ACCESS", "client_as", "local_access_text", "management_client", "member_client"]

REPO = Path(__file__).resolve().parents[2]
#: the local access policy's template (its databases' users come from the world file)
LOCAL_ACCESS = REPO / "policies" / "local-access.yaml"


def local_access_text(world: Any | None = None) -> str:
    """The local access policy as ``rdsvend local up`` builds it from its template and ``world``
    (default: the shipped world), before it fills in hosts and ports."""
    return merged_access_text(LOCAL_ACCESS, world if world is not None else load_world())


def management_client(seeded: Any, service: str) -> Any:
    """A client acting in the management account."""
    mgmt = boto3.session.Session(aws_access_key_id="AKIAMGMT", aws_secret_access_key="x", region_name="us-east-1")
    client = mgmt.client(service, endpoint_url=seeded.endpoint_url)
    client.meta.events.register("before-sign", lambda request, **_: request.headers.__setitem__(
        "x-moto-account-id", seeded.management_account))
    return client


def member_client(seeded: Any, account: str, service: str) -> Any:
    """A client acting in ``account``, reached as an operator would."""
    sts = management_client(seeded, "sts")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                            RoleSessionName="test")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"], region_name="us-east-1",
    ).client(service, endpoint_url=seeded.endpoint_url)


def client_as(seeded: Any, keys: Keys, service: str) -> Any:
    """A client signing with ``keys`` (a caller, the execution role ...) of the seeded world."""
    return keys.session(seeded.region).client(service, endpoint_url=seeded.endpoint_url)
