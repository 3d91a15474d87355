"""Point the canary at a running local stack (``make demo``, the end-to-end tests, the bench).

The canary runs as the service's execution role (in the service account), reads the
organization's SCPs through a reader role in the management account (as a real deployment
must: member accounts cannot list SCPs), and reads role memberships through the local
PostgreSQL's administrator DSN.
"""
from __future__ import annotations

import json
from typing import Any

from chalicelib.canary.factory import canary_deps
from chalicelib.canary.target import CanaryDeps
from chalicelib.policy.model import AccessPolicy
from devtools.local.rds_mysql import mysql_admin_env

__all__ = ["ORG_READER_ROLE", "ensure_org_reader", "local_canary_env", "local_canary_deps"]

ORG_READER_ROLE = "rdsvend-org-reader"
_READER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "ReadScps", "Effect": "Allow", "Resource": "*", "Action": [
        "organizations:DescribeOrganization", "organizations:DescribeOrganizationalUnit",
        "organizations:DescribePolicy", "organizations:ListParents", "organizations:ListRoots",
        "organizations:ListPoliciesForTarget"]}],
}


def ensure_org_reader(info: Any) -> str:
    """The management account's SCP reader role, trusted by the service account (idempotent)."""
    from botocore.exceptions import ClientError

    from devtools.local.aws import AccountSessions

    seeded = info.seeded
    sessions = AccountSessions(info.moto_url, info.region, seeded.management_account)
    iam = sessions.client("iam", seeded.management_account)
    service_account = seeded.execution.account
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{service_account}:root"}}]}
    try:
        iam.create_role(RoleName=ORG_READER_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
    iam.put_role_policy(RoleName=ORG_READER_ROLE, PolicyName="read-scps", PolicyDocument=json.dumps(_READER_POLICY))
    return f"arn:aws:iam::{seeded.management_account}:role/{ORG_READER_ROLE}"


def local_canary_env(info: Any) -> dict[str, str]:
    """The environment the canary function would have on the local stack (holds secrets)."""
    env = {
        "AWS_ENDPOINT_URL": info.moto_url,
        "AWS_DEFAULT_REGION": info.region,
        "RDSVEND_POLICY": info.policy_path,
        "PGSSLROOTCERT": info.ca_path,
        "RDSVEND_CANARY_ADMIN_DSN": info.admin_dsn,
        **{k.replace("LOCAL", "CANARY"): v for k, v in mysql_admin_env(info.databases).items()},
        "RDSVEND_ORG_ROLE_ARN": ensure_org_reader(info),
        **info.seeded.execution.env(),
    }
    return env


def local_canary_deps(info: Any, policy: AccessPolicy, *, endpoint_url: str | None = None,
                      env: dict[str, str] | None = None) -> CanaryDeps:
    """Real adapters, acting as the service's execution role against the local stack's moto
    (or ``endpoint_url``, e.g. a dead port to play an AWS outage)."""
    env = dict(env if env is not None else local_canary_env(info))
    session = info.seeded.execution.session(info.region)
    return canary_deps(policy, env, endpoint_url=endpoint_url or info.moto_url, session=session)
