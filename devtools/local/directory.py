"""The local world's Directory Service: AWS Managed Microsoft AD directories that RDS
instances are joined to (Kerberos logins), and the AWS managed policy their IAM role needs.

Seeding goes through the public APIs, as an operator would: a VPC with two subnets in two
Availability Zones (Directory Service requires them), then ``CreateMicrosoftAD``; the
instance is created with ``Domain`` / ``DomainIAMRoleName`` and RDS (moto) reports the
membership in ``DomainMemberships``.

One shim, in-process like the others in :mod:`devtools.local.aws`: moto loads AWS managed
policies only when ``MOTO_IAM_LOAD_MANAGED_POLICIES`` is set, and then all ~1,200 of them
in every account it touches. :func:`provide_aws_managed_policy` puts just the one the world
attaches (from moto's own copy of AWS's data) into the account, so that
``AttachRolePolicy`` accepts it and ``ListAttachedRolePolicies`` reports it as AWS would.
"""
from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Mapping
from typing import Any

from devtools.local.world import DirectorySpec

__all__ = ["AWS_MANAGED_PREFIX", "create_directories", "provide_aws_managed_policy"]

AWS_MANAGED_PREFIX = "arn:aws:iam::aws:policy/"
_VPC_CIDR = "10.42.0.0/16"
_SUBNETS = (("10.42.1.0/24", "a"), ("10.42.2.0/24", "b"))
_DATA_LOCK = threading.Lock()
_AWS_POLICY_DATA: dict[str, Any] | None = None


def create_directories(ec2: Any, ds: Any, region: str, specs: Mapping[str, DirectorySpec]) -> dict[str, str]:
    """Create each directory (and the VPC it needs) with the account's clients; name -> id."""
    if not specs:
        return {}
    vpc = ec2.create_vpc(CidrBlock=_VPC_CIDR)["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{region}{zone}")["Subnet"]["SubnetId"]
               for cidr, zone in _SUBNETS]
    out = {}
    for spec in specs.values():
        # The directory administrator's password is never used locally: random, and forgotten.
        password = "Ad-" + secrets.token_urlsafe(18) + "9a"
        out[spec.name] = ds.create_microsoft_ad(
            Name=spec.name, ShortName=spec.short_name, Password=password, Edition="Standard",
            Description="rdsvend local world: Kerberos logins to RDS",
            VpcSettings={"VpcId": vpc, "SubnetIds": subnets})["DirectoryId"]
    return out


def _aws_policy_data() -> dict[str, Any]:
    global _AWS_POLICY_DATA
    with _DATA_LOCK:
        if _AWS_POLICY_DATA is None:
            from moto.iam.aws_managed_policies import aws_managed_policies_data

            _AWS_POLICY_DATA = json.loads(aws_managed_policies_data)
        return _AWS_POLICY_DATA


def provide_aws_managed_policy(account: str, arn: str, partition: str = "aws") -> None:
    """Make the AWS managed policy ``arn`` exist in ``account`` of the moto in this process.

    A no-op for customer managed policies and for one already there. An ARN AWS does not
    have raises :class:`KeyError`, as AttachRolePolicy would refuse it.
    """
    if not arn.startswith(AWS_MANAGED_PREFIX):
        return
    from moto.iam.models import AWSManagedPolicy, iam_backends

    backend = iam_backends[account][partition]
    if arn in backend.managed_policies:
        return
    name = arn.rsplit("/", 1)[-1]
    data = _aws_policy_data().get(name)
    if data is None:
        raise KeyError(f"no AWS managed policy '{arn}'")
    policy = AWSManagedPolicy.from_data(name, account, backend.region_name, data)
    if policy.arn != arn:
        raise KeyError(f"no AWS managed policy '{arn}' (AWS has '{policy.arn}')")
    backend.managed_policies[policy.arn] = policy
