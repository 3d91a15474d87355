"""rdsvend deployed into the local organization, as a user deploys it: the ``local`` stage.

:func:`deploy_local` runs once the world is seeded and the access policy written (its hosts,
ports and DSQL cluster ids are the local ones). It builds the stage with the packaging code
(:func:`devtools.deploy.local_stage.local_stage`: ``.chalice/config.json``'s ``dev`` stage
renamed ``local``, the generated documents of :mod:`devtools.deploy.documents`) and deploys it
through the local AWS with the service account's administrator
(:func:`devtools.deploy.local_stage.deploy_local_stage`): the service stack in the service
account, the member-roles template in each member account it lists, trusting the world's
operator too (its ``OperatorPrincipalArns``). Before that, the operator's own part of the
setup: the organization reader role in the management account (the world's, or made here as
docs/deploy.md has the operator make it), named to the canary as ``RDSVEND_ORG_ROLE_ARN``.

Then each function's credentials: its role's session, made as Lambda makes it for the role a
function runs as (:func:`devtools.local.sessions.service_assumes`, session name = the function's
name). The gateway runs the ``api_handler`` with them, the Invoke API ``vend``, the canary and
rotation helpers (:mod:`devtools.local.canary`, :mod:`devtools.local.secrets`) the others.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from chalicelib.aws.errors import aws_error
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy
from devtools.deploy.local_stage import LocalDeployment, LocalStage, deploy_local_stage, local_stage
from devtools.deploy.member_roles import DSQL_SIGNER_POLICY, SIGNER_POLICY
from devtools.local.seed import SeededWorld
from devtools.local.sessions import AccountSessions, Keys, service_assumes
from devtools.local.world import World

__all__ = ["ORG_READER_ROLE", "ORG_READER_POLICY", "SIGNER_POLICY", "DSQL_SIGNER_POLICY", "LocalRun", "deploy_local",
           "resource_ids", "org_reader_arn", "create_org_reader", "role_policy_changed", "running_stage"]

#: The organization reader role the operator creates in the management account (SCPs are
#: readable only there): docs/deploy.md, "The canary in a member account".
ORG_READER_ROLE = "rdsvend-org-reader"
ORG_READER_POLICY: Mapping[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "ReadScps", "Effect": "Allow", "Resource": "*", "Action": [
        "organizations:DescribeOrganization", "organizations:DescribeOrganizationalUnit",
        "organizations:DescribePolicy", "organizations:ListParents", "organizations:ListRoots",
        "organizations:ListPoliciesForTarget", "organizations:ListAccounts"]}],
}
#: How long the functions' sessions last (Lambda renews them; the local stack makes them once).
SESSION_SECONDS = 43200


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """What the deployment made, and the world as seeded plus the functions' credentials."""

    stage: LocalStage
    deployment: LocalDeployment
    seeded: SeededWorld


def org_reader_arn(management_account: str) -> str:
    return f"arn:aws:iam::{management_account}:role/{ORG_READER_ROLE}"


def create_org_reader(iam: Any, management_account: str, service_account: str) -> str:
    """The management account's SCP reader role, trusted by the service account (``iam``: the
    management account's). The world's when it has one; else made now, as the operator would."""
    try:
        iam.get_role(RoleName=ORG_READER_ROLE)
        return org_reader_arn(management_account)
    except Exception as exc:
        error = aws_error(exc)
        if error is None or error.code != "NoSuchEntity":
            raise
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{service_account}:root"}}]}
    try:
        iam.create_role(RoleName=ORG_READER_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    except Exception as exc:
        error = aws_error(exc)
        if error is None or error.code != "EntityAlreadyExists":
            raise
    iam.put_role_policy(RoleName=ORG_READER_ROLE, PolicyName="read-scps", PolicyDocument=json.dumps(ORG_READER_POLICY))
    return org_reader_arn(management_account)


def resource_ids(policy: AccessPolicy, seeded: SeededWorld) -> dict[str, str]:
    """The resource id of every RDS database the policy declares (an instance's ``DbiResourceId``,
    a proxy's ``prx-`` id), read from what seeding made: what ``deploy.yaml`` gives a real stage."""
    found: dict[str, str] = {}
    for db in policy.databases.values():
        if db.is_dsql:
            continue
        made = seeded.proxies.get(db.identifier) if db.kind == "proxy" else seeded.instances.get(db.identifier)
        if made is not None:
            found[db.name] = made.resource_id
    return found


def _signer_of_service(policy: AccessPolicy, account: str) -> str:
    """The signer role of the service account's RDS databases (``""``: they sign with the functions' own)."""
    return next((str(db.signer_role) for db in policy.databases.values()
                 if db.signer_role and not db.is_dsql and db.signer_role.split(":")[4] == account), "")


def deploy_local(world: World, seeded: SeededWorld, sessions: AccountSessions, policy_text: str) -> LocalRun:
    """Deploy the ``local`` stage serving ``policy_text`` (see the module doc); the returned
    world carries each function's credentials."""
    account, management = world.service_account, world.organization.management_account
    create_org_reader(sessions.client("iam", management), management, account)
    stage = running_stage(policy_text, dataclasses.replace(seeded, service_account=account), world.region)
    policy = stage.policy
    operators = (world.operator.arn,) if world.operator is not None else ()
    deployment = deploy_local_stage(stage, sessions.client, management_account=management, operators=operators)
    functions: dict[str, Keys] = {
        function: service_assumes(deployment.roles[function], name, world.region, duration=SESSION_SECONDS)
        for function, name in stage.plan.functions.items()}
    ready = dataclasses.replace(seeded, functions=functions, signer_role_arn=_signer_of_service(policy, account))
    return LocalRun(stage, deployment, ready)


def running_stage(policy_text: str, seeded: SeededWorld, region: str) -> LocalStage:
    """The ``local`` stage a running stack deployed (``policy_text``: the access policy it
    serves, its ``access.yaml``), built again from the inputs :func:`deploy_local` built it from."""
    account = seeded.service_account
    policy = load_policy_text(policy_text, "local access policy", service_account=account)
    return local_stage(policy_text, account=account, region=region, org_id=seeded.org_id,
                       resource_ids=resource_ids(policy, seeded), org_role=org_reader_arn(seeded.management_account))


@contextmanager
def role_policy_changed(iam: Any, role: str, policy: str,
                        change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Iterator[dict[str, Any]]:
    """A role's inline ``policy`` changed to what ``change`` makes of its document (``None``: the
    policy deleted) for the ``with`` block, then put back as it was (``iam``: an administrator's
    client in the role's account). Yields the original document. Tests and the demo break the
    deployed roles this way (the signer's ``rdsvend-connect``, ...)."""
    original = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    original = json.loads(original) if isinstance(original, str) else original
    changed = change(json.loads(json.dumps(original)))
    if changed is None:
        iam.delete_role_policy(RoleName=role, PolicyName=policy)
    else:
        iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(changed))
    try:
        yield original
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(original))
