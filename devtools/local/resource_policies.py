"""Resource-based policies (a role's trust, a secret's, a topic's, a function's) as rdsvend's
evaluator reads them: :func:`applicable` keeps the statements whose ``Principal`` names the
caller (by its ARN, its role, its account or ``*``) and hands them over without ``Principal``."""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from chalicelib.iam.model import PolicyDocument, parse_policy
from devtools.local.moto_state import Principal

__all__ = ["applicable"]


def _values(raw: Any) -> list[str]:
    return [str(v) for v in raw] if isinstance(raw, list) else [str(raw)]


def _principal_names(principal: Principal) -> set[str]:
    """What a resource policy's ``Principal`` may call this caller by."""
    names = {principal.arn, principal.account, f"arn:aws:iam::{principal.account}:root", "*"}
    if ":assumed-role/" in principal.arn:
        role = principal.arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
        names.add(f"arn:aws:iam::{principal.account}:role/{role}")
    return names


def _names_caller(block: Any, names: set[str]) -> bool:
    if block == "*":
        return True
    if not isinstance(block, Mapping):
        return False
    return bool(names & set(_values(block.get("AWS", []))))


def _named_exactly(block: Any, principal: Principal) -> bool:
    """The policy names the caller itself (not its account): no identity permission is needed
    in the resource's own account."""
    exact = _principal_names(principal) - {principal.account, f"arn:aws:iam::{principal.account}:root", "*"}
    return isinstance(block, Mapping) and bool(exact & set(_values(block.get("AWS", []))))


@lru_cache(maxsize=2048)
def applicable(text: str, principal: Principal, source: str) -> tuple[PolicyDocument | None, bool]:
    """The statements of a resource policy that name this caller, as a policy the evaluator
    reads (``Principal`` taken off, ``Resource`` ``*`` where the policy has none), and whether an
    Allow names the caller exactly."""
    document = json.loads(text)
    if not isinstance(document, Mapping):
        raise ValueError(f"{source} is not a JSON object")
    names = _principal_names(principal)
    kept: list[dict[str, Any]] = []
    exact = False
    raw = document.get("Statement", [])
    for stmt in raw if isinstance(raw, list) else [raw]:
        if not isinstance(stmt, Mapping):
            continue
        if "NotPrincipal" in stmt:
            matches = not _names_caller(stmt["NotPrincipal"], names - {"*"})
        else:
            matches = _names_caller(stmt.get("Principal"), names)
        if not matches:
            continue
        if stmt.get("Effect") == "Allow" and _named_exactly(stmt.get("Principal"), principal):
            exact = True
        clean = {k: v for k, v in stmt.items() if k not in ("Principal", "NotPrincipal")}
        if "Resource" not in clean and "NotResource" not in clean:
            clean["Resource"] = "*"
        kept.append(clean)
    if not kept:
        return None, False
    return parse_policy({"Version": "2012-10-17", "Statement": kept}, source), exact
