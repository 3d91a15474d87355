"""Read the policies in force from AWS: the adapter in front of the pure evaluator.

Every function takes boto3 clients as arguments (none is created here) and raises
:class:`chalicelib.errors.IamFetchError` when AWS refuses or fails, and
:class:`chalicelib.errors.IamPolicyError` when a stored document is malformed: "could not
evaluate" is never reported as a decision.

- :func:`fetch_principal_policies(iam, principal_arn) <fetch_principal_policies>`: a role's or
  user's inline and attached managed policies (default versions), a user's group policies,
  and the permissions boundary. An assumed-role session ARN
  (``arn:aws:sts::A:assumed-role/R/S``) reads role ``R``.
- :func:`fetch_scp_chain(org, account_id) <fetch_scp_chain>`: the SCPs at each level from the
  root down to the account (``list_parents`` upwards, then ``list_policies_for_target`` with
  ``Filter='SERVICE_CONTROL_POLICY'`` and ``describe_policy`` at each level), and whether the
  account is the organization's management account. ``None`` when the account is not in an
  organization, when the organization only has consolidated billing, or when SCPs are not
  enabled on the root (then SCPs restrict nothing).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from chalicelib.aws.errors import aws_error
from chalicelib.errors import IamFetchError
from chalicelib.iam.model import PolicyDocument, parse_policy

__all__ = [
    "PrincipalPolicies",
    "ScpChain",
    "fetch_principal_policies",
    "fetch_scp_chain",
    "inline_source",
    "principal_ref",
    "source_parts",
]

_PRINCIPAL = re.compile(
    r"^arn:(?P<partition>[^:]+):(?P<service>iam|sts)::(?P<account>\d{12}):"
    r"(?P<kind>role|user|assumed-role)/(?P<rest>.+)$"
)


@dataclass(frozen=True)
class PrincipalPolicies:
    principal_arn: str  # the ARN asked about
    kind: Literal["role", "user"]
    name: str
    account: str
    arn: str  # the role's or user's own ARN (path included)
    unique_id: str  # RoleId / UserId
    identity: tuple[PolicyDocument, ...]
    boundary: PolicyDocument | None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScpChain:
    account_id: str
    organization_id: str
    management_account: bool
    level_ids: tuple[str, ...]  # root id, OU ids, the account id: root first
    levels: tuple[tuple[PolicyDocument, ...], ...]


def principal_ref(principal_arn: str) -> tuple[Literal["role", "user"], str, str, str | None]:
    """``(kind, name, account, session)`` of a user, role or assumed-role session ARN."""
    m = _PRINCIPAL.match(principal_arn)
    if not m:
        raise IamFetchError(f"not an IAM user, role or assumed-role ARN: '{principal_arn}'", service="iam")
    kind, rest = m["kind"], m["rest"]
    if kind == "assumed-role":
        if m["service"] != "sts" or "/" not in rest:
            raise IamFetchError(f"malformed assumed-role ARN: '{principal_arn}'", service="sts")
        role, session = rest.split("/", 1)
        return "role", role, m["account"], session
    if m["service"] != "iam":
        raise IamFetchError(f"not an IAM user or role ARN: '{principal_arn}'", service="iam")
    return kind, rest.rsplit("/", 1)[-1], m["account"], None  # type: ignore[return-value]  # user or role, by the regex


def _fetch_error(service: str, op: str, exc: Exception) -> IamFetchError | None:
    """The :class:`IamFetchError` for an AWS failure (None: not one). ``code`` is the service's
    error code; a call that got no answer (connection, credentials) has none."""
    error = aws_error(exc)
    if error is None:
        return None
    if error.kind == "no_answer":
        return IamFetchError(f"{service} {op} failed: {error.code}", service=service)
    return IamFetchError(f"{service} {op} failed: {error.code}: {error.message}"[:300], service=service,
                         code=error.code)


def _call(service: str, op: str, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    try:
        return fn(**kwargs)
    except Exception as exc:
        failure = _fetch_error(service, op, exc)
        if failure is None:
            raise
        raise failure from exc


def _pages(service: str, client: Any, op: str, key: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    try:
        paginator = client.get_paginator(op)
        for page in paginator.paginate(**kwargs):
            items.extend(page.get(key, []))
    except Exception as exc:
        failure = _fetch_error(service, op, exc)
        if failure is None:
            raise
        raise failure from exc
    return items


_INLINE = re.compile(r"^(?P<owner>arn:\S+) inline policy '(?P<name>.*)'$")


def inline_source(owner_arn: str, policy_name: str) -> str:
    """What a document read from an inline policy is called (its :attr:`PolicyDocument.source`)."""
    return f"{owner_arn} inline policy '{policy_name}'"


def source_parts(source: str) -> tuple[str, str]:
    """``(owner ARN, policy name)`` of an inline policy's source; ``("", source)`` for a managed
    policy (its ARN) or anything else."""
    m = _INLINE.match(source)
    return (m["owner"], m["name"]) if m else ("", source)


def _document(raw: Any, source: str) -> PolicyDocument:
    """IAM returns documents URL-encoded JSON (boto3 usually decodes them already)."""
    if isinstance(raw, str):
        text = raw.strip()
        if not text.startswith("{"):
            text = unquote(text)
        return parse_policy(text, source)
    return parse_policy(raw, source)


def _managed(iam: Any, arn: str, cache: dict[str, PolicyDocument]) -> PolicyDocument:
    if arn not in cache:
        policy = _call("iam", "GetPolicy", iam.get_policy, PolicyArn=arn)["Policy"]
        version = _call(
            "iam", "GetPolicyVersion", iam.get_policy_version,
            PolicyArn=arn, VersionId=policy["DefaultVersionId"],
        )["PolicyVersion"]
        cache[arn] = _document(version["Document"], arn)
    return cache[arn]


def _attached_and_inline(iam: Any, kind: str, name: str, arn: str,
                         cache: dict[str, PolicyDocument]) -> list[PolicyDocument]:
    """The inline and attached managed policies of one IAM role, user or group.

    ``kind`` is ``Role``, ``User`` or ``Group``: IAM names each call after it
    (``ListRolePolicies``, ``GetUserPolicy``, ``ListAttachedGroupPolicies`` ...).
    """
    lower = kind.lower()
    key = {f"{kind}Name": name}
    docs: list[PolicyDocument] = []
    for pname in _pages("iam", iam, f"list_{lower}_policies", "PolicyNames", **key):
        raw = _call("iam", f"Get{kind}Policy", getattr(iam, f"get_{lower}_policy"), PolicyName=pname, **key)
        docs.append(_document(raw["PolicyDocument"], inline_source(arn, pname)))
    attached = _pages("iam", iam, f"list_attached_{lower}_policies", "AttachedPolicies", **key)
    docs.extend(_managed(iam, a["PolicyArn"], cache) for a in attached)
    return docs


def fetch_principal_policies(iam: Any, principal_arn: str) -> PrincipalPolicies:
    """Every identity-based policy and the boundary of a user, role or role session."""
    kind, name, account, _session = principal_ref(principal_arn)
    cache: dict[str, PolicyDocument] = {}
    if kind == "role":
        entity = _call("iam", "GetRole", iam.get_role, RoleName=name)["Role"]
        unique_id = entity["RoleId"]
        docs = _attached_and_inline(iam, "Role", name, entity["Arn"], cache)
        tags = entity.get("Tags")
        if tags is None:
            tags = _pages("iam", iam, "list_role_tags", "Tags", RoleName=name)
    else:
        entity = _call("iam", "GetUser", iam.get_user, UserName=name)["User"]
        unique_id = entity["UserId"]
        docs = _attached_and_inline(iam, "User", name, entity["Arn"], cache)
        for group in _pages("iam", iam, "list_groups_for_user", "Groups", UserName=name):
            docs.extend(_attached_and_inline(iam, "Group", group["GroupName"], group["Arn"], cache))
        tags = entity.get("Tags")
        if tags is None:
            tags = _pages("iam", iam, "list_user_tags", "Tags", UserName=name)
    boundary = None
    boundary_ref = entity.get("PermissionsBoundary")
    if boundary_ref:
        boundary = _managed(iam, boundary_ref["PermissionsBoundaryArn"], cache)
    return PrincipalPolicies(
        principal_arn=principal_arn,
        kind=kind,
        name=name,
        account=account,
        arn=entity["Arn"],
        unique_id=unique_id,
        identity=tuple(docs),
        boundary=boundary,
        tags={t["Key"]: t["Value"] for t in tags or []},
    )


def fetch_scp_chain(org: Any, account_id: str) -> ScpChain | None:
    """The SCP levels over ``account_id``, root first; ``None`` when SCPs do not apply."""
    try:
        organization = org.describe_organization()["Organization"]
    except Exception as exc:
        error = aws_error(exc)
        if error is None:
            raise
        if error.code == "AWSOrganizationsNotInUseException":
            return None
        code = "" if error.kind == "no_answer" else error.code
        raise IamFetchError(f"organizations DescribeOrganization failed: {error.code}", service="organizations",
                            code=code) from exc
    if organization.get("FeatureSet") == "CONSOLIDATED_BILLING":
        return None
    management = organization.get("MasterAccountId") == account_id

    chain = [account_id]
    child = account_id
    for _ in range(10):  # the root, at most five OU levels, the account: never loop forever
        parents = _call("organizations", "ListParents", org.list_parents, ChildId=child)["Parents"]
        if not parents:
            raise IamFetchError(f"organizations ListParents returned no parent for '{child}'", service="organizations")
        child = parents[0]["Id"]
        chain.append(child)
        if parents[0]["Type"] == "ROOT":
            break
    else:
        raise IamFetchError(f"organizations: no root above account '{account_id}'", service="organizations")
    chain.reverse()

    cache: dict[str, PolicyDocument] = {}
    levels: list[tuple[PolicyDocument, ...]] = []
    for target in chain:
        summaries = _pages(
            "organizations", org, "list_policies_for_target", "Policies",
            TargetId=target, Filter="SERVICE_CONTROL_POLICY",
        )
        docs = []
        for summary in summaries:
            pid = summary["Id"]
            if pid not in cache:
                policy = _call("organizations", "DescribePolicy", org.describe_policy, PolicyId=pid)["Policy"]
                source = f"SCP '{summary.get('Name', pid)}' ({pid})"
                cache[pid] = _document(policy["Content"], source)
            docs.append(cache[pid])
        levels.append(tuple(docs))
    if not levels[0] and not _scp_enabled(org, chain[0]):
        return None  # SCPs not enabled: nothing is attached anywhere and nothing is restricted
    return ScpChain(
        account_id=account_id,
        organization_id=organization.get("Id", ""),
        management_account=management,
        level_ids=tuple(chain),
        levels=tuple(levels),
    )


def _scp_enabled(org: Any, root_id: str) -> bool:
    roots = _pages("organizations", org, "list_roots", "Roots")
    for root in roots:
        if root["Id"] == root_id:
            return any(
                t.get("Type") == "SERVICE_CONTROL_POLICY" and t.get("Status") == "ENABLED"
                for t in root.get("PolicyTypes", [])
            )
    return False
