"""What the local AWS lets a principal do, decided as AWS decides it, for the checks moto does
not make: ``lambda:InvokeFunction`` on the local ``vend`` function, and ``sts:AssumeRole``
(the role's trust policy, then the caller's own permission).

Identity policies, permissions boundary and the organization's SCP levels are read live from
the local AWS and judged by rdsvend's evaluator (:mod:`chalicelib.iam`). Anything that could
not be evaluated is a refusal.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.errors import IamFetchError, IamPolicyError
from chalicelib.iam.connect import principal_context
from chalicelib.iam.evaluator import evaluate, scan
from chalicelib.iam.fetch import fetch_principal_policies, fetch_scp_chain
from chalicelib.iam.model import RequestContext, parse_policy

__all__ = ["Decide", "SEED_SESSION_MARK", "identity_permission", "trust_allows", "assume_role_permission"]

#: ``(principal_arn, account, resource_arn) -> (allowed, why)``
Decide = Callable[[str, str, str], tuple[bool, str]]


def identity_permission(iam_client_for: Callable[[str], Any], org_client: Any, action: str) -> Decide:
    """May the principal do ``action`` on a resource by its identity policies, boundary and SCPs?"""

    def decide(principal_arn: str, account: str, resource: str) -> tuple[bool, str]:
        try:
            fetched = fetch_principal_policies(iam_client_for(account), principal_arn)
            chain = fetch_scp_chain(org_client, account)
        except (IamFetchError, IamPolicyError) as exc:
            return False, f"its permission could not be evaluated ({type(exc).__name__})"
        region = resource.split(":")[3] if resource.count(":") >= 3 else ""
        ctx = principal_context(principal_arn, fetched, org_id=chain.organization_id if chain else None,
                                region=region or None)
        request = RequestContext(action, resource, {k.lower(): v for k, v in ctx.items()})
        verdict = evaluate(request, identity_policies=fetched.identity, boundary=fetched.boundary,
                           scp_levels=chain.levels if chain else None,
                           management_account=chain.management_account if chain else False)
        if verdict.allowed:
            return True, ""
        if verdict.decision == "explicitDeny":
            return False, f"an explicit deny in a {verdict.layer} policy"
        layer = "identity-based" if verdict.layer == "identity" else verdict.layer
        return False, f"no {layer} policy allows the {action} action"

    return decide


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def trust_allows(trust: str | Mapping[str, Any], principal_arn: str, account: str) -> str | None:
    """How a role's trust policy lets ``principal_arn`` assume it: ``"principal"`` (named
    exactly: no identity permission needed in the role's own account), ``"account"`` (the
    account is trusted: the caller's identity policies must allow it), or ``None``.

    An assumed-role session is named by its role's ARN. A statement's ``Condition`` is judged
    by rdsvend's evaluator with the keys AWS sets for the caller (``aws:PrincipalArn``, the
    role's ARN for a session, and ``aws:PrincipalAccount``); a key it does not know makes the
    statement allow nothing (fail closed).
    """
    document = json.loads(trust) if isinstance(trust, str) else trust
    names = {principal_arn}
    caller = principal_arn  # aws:PrincipalArn: a session's is its role's
    if ":assumed-role/" in principal_arn:
        role = principal_arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
        caller = f"arn:aws:iam::{account}:role/{role}"
        names.add(caller)
    found: str | None = None
    for stmt in _as_list(document.get("Statement") or []):
        if not isinstance(stmt, Mapping):
            continue
        actions = [str(a).lower() for a in _as_list(stmt.get("Action") or [])]
        if not any(a in ("sts:assumerole", "sts:*", "*") for a in actions):
            continue
        principal = stmt.get("Principal")
        aws = _as_list(principal.get("AWS", [])) if isinstance(principal, Mapping) else (
            ["*"] if principal == "*" else [])
        how = ("principal" if names & set(aws) else
               "account" if {f"arn:aws:iam::{account}:root", account, "*"} & set(aws) else None)
        if how is None:
            continue
        if stmt.get("Effect") == "Deny":
            return None
        if stmt.get("Effect") == "Allow" and _conditions_hold(stmt.get("Condition"), caller, account):
            found = "principal" if "principal" in (found, how) else how
    return found


def _conditions_hold(condition: Any, principal_arn: str, account: str) -> bool:
    """Does a trust statement's ``Condition`` (none: yes) hold for this caller?"""
    if not condition:
        return True
    try:
        document = parse_policy({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*", "Condition": condition}]},
            "trust policy condition")
    except IamPolicyError:
        return False
    context = {"aws:principalarn": (principal_arn,), "aws:principalaccount": (account,)}
    _deny, allow = scan([document], RequestContext("sts:AssumeRole", "*", context))
    return allow is not None


#: The stack's own administrator sessions (seeding, and playing Lambda for the execution
#: role): the OrganizationAccountAccessRole sessions it opens under this name.
SEED_SESSION_MARK = ":assumed-role/OrganizationAccountAccessRole/rdsvend-local-seed"


def assume_role_permission(identity: Decide, partition: str = "aws") -> Callable[[str, str, str], tuple[bool, str]]:
    """``(principal_arn, account, role_arn) -> (allowed, why)`` for ``sts:AssumeRole``: the role
    exists (in the moto of this process), its trust policy names the caller or the caller's
    account, and, unless the caller is named in the role's own account, the caller's identity
    policies allow ``sts:AssumeRole`` on it."""

    def decide(principal_arn: str, account: str, role_arn: str) -> tuple[bool, str]:
        from moto.iam.models import iam_backends

        if SEED_SESSION_MARK in principal_arn:
            return True, ""
        parts = role_arn.split(":")
        if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
            return False, "the role ARN is not valid"
        role_account, role_name = parts[4], parts[5].rsplit("/", 1)[-1]
        try:
            role = iam_backends[role_account][partition].get_role(role_name)
        except Exception:  # noqa: BLE001 - moto raises its NoSuchEntity: the role does not exist
            return False, "the role does not exist"
        how = trust_allows(role.assume_role_policy_document, principal_arn, account)
        if how is None:
            return False, "the role's trust policy does not allow it"
        if how == "principal" and role_account == account:
            return True, ""
        return identity(principal_arn, account, role_arn)

    return decide
