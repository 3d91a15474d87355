"""AWS's documented policy evaluation logic, as a pure function ("Policy evaluation logic").

:func:`evaluate` takes a :class:`~chalicelib.iam.model.RequestContext` and the policies in
force and returns an :class:`Evaluation`:

1. An explicit ``Deny`` in any applicable policy (SCP, boundary, session, identity) wins:
   ``explicitDeny``.
2. Every SCP level, root first and account last, must have at least one ``Allow`` among the
   SCPs attached at that level (a union within a level). The management account is never
   restricted by SCPs (``management_account=True`` skips them, denies included).
3. An identity-based policy must allow.
4. The permissions boundary, when given, must allow.
5. The session policy, when given, must allow.

Anything else is an ``implicitDeny``. The result names the deciding layer (``identity``,
``boundary``, ``scp``, ``session``), the policy (its source: a file, a policy ARN, or
``scp level N`` for an SCP level that allows nothing) and the statement (``Sid`` or index),
and carries a sentence a person understands.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from chalicelib.iam.conditions import condition_holds
from chalicelib.iam.model import PolicyDocument, RequestContext, Statement
from chalicelib.iam.patterns import CompiledPatterns, compile_patterns, resource_matches

__all__ = ["Evaluation", "Match", "evaluate", "evaluate_scps", "statement_applies", "scan"]

Decision = Literal["allowed", "explicitDeny", "implicitDeny"]
Layer = Literal["identity", "boundary", "scp", "session"]


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    layer: Layer | None
    policy: str | None
    statement: int | str | None
    explanation: str

    @property
    def allowed(self) -> bool:
        return self.decision == "allowed"

    def to_dict(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "layer": self.layer,
            "policy": self.policy,
            "statement": self.statement,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Match:
    """A statement that applies to the request."""

    policy: PolicyDocument
    statement: Statement


# Compiled matchers are cached on the immutable statements and documents themselves, in the
# instance ``__dict__`` (as ``functools.cached_property`` does): not fields, so equality,
# hashing and ``repr`` are untouched, and they go away with the policy objects.
_STMT_KEY = "_rdsvend_compiled"
_DOC_KEY = "_rdsvend_by_action"
_MAX_ACTIONS_CACHED = 256


@dataclass(frozen=True)
class _Compiled:
    stmt: Statement
    deny: bool
    positive: bool  # Resource (True) or NotResource (False)
    resources: CompiledPatterns | None  # None: a pattern uses a policy variable (per request)


def _compile(stmt: Statement, variables: bool) -> _Compiled:
    cached = stmt.__dict__.get(_STMT_KEY)
    if cached is not None and cached[0] == variables:
        hit: _Compiled = cached[1]
        return hit
    positive = stmt.resources is not None
    patterns = stmt.resources if stmt.resources is not None else stmt.not_resources or ()
    compiled = _Compiled(
        stmt=stmt,
        deny=stmt.effect == "Deny",
        positive=positive,
        resources=compile_patterns(tuple(patterns), variables=variables, ignore_case=False, resource=True),
    )
    stmt.__dict__[_STMT_KEY] = (variables, compiled)
    return compiled


def _action_applies(stmt: Statement, action: str) -> bool:
    positive = stmt.actions is not None
    patterns = stmt.actions if stmt.actions is not None else stmt.not_actions or ()
    compiled = compile_patterns(tuple(patterns), variables=False, ignore_case=True, resource=False)
    assert compiled is not None  # actions never use variables
    return compiled.match(action.lower()) == positive


def _for_action(policy: PolicyDocument, action: str) -> tuple[_Compiled, ...]:
    """The statements of ``policy`` whose Action/NotAction covers ``action`` (cached)."""
    index = policy.__dict__.get(_DOC_KEY)
    if index is None:
        index = policy.__dict__[_DOC_KEY] = {}
    key = action.lower()
    entries = index.get(key)
    if entries is None:
        variables = policy.variables_enabled
        entries = tuple(_compile(s, variables) for s in policy.statements if _action_applies(s, action))
        if len(index) < _MAX_ACTIONS_CACHED:
            index[key] = entries
    return entries


def _applies(entry: _Compiled, request: RequestContext, variables: bool) -> bool:
    if entry.resources is None:
        lookup = request.get
        hit = False
        stmt = entry.stmt
        for pattern in stmt.resources if stmt.resources is not None else stmt.not_resources or ():
            outcome = resource_matches(pattern, request.resource, lookup, variables=variables)
            if outcome is None:
                return False  # a variable without a value invalidates the whole statement
            hit = hit or outcome
    else:
        hit = entry.resources.match(request.resource)
    if hit != entry.positive:
        return False
    conditions = entry.stmt.conditions
    return not conditions or all(condition_holds(c, request, variables=variables) for c in conditions)


def statement_applies(stmt: Statement, request: RequestContext, *, variables: bool = True) -> bool:
    """Do the statement's action, resource and every condition match the request?"""
    if not _action_applies(stmt, request.action):
        return False
    return _applies(_compile(stmt, variables), request, variables)


def scan(
    policies: Sequence[PolicyDocument], request: RequestContext
) -> tuple[Match | None, Match | None]:
    """The first applicable Deny and the first applicable Allow among ``policies``."""
    allow: Match | None = None
    for policy in policies:
        variables = policy.variables_enabled
        for entry in _for_action(policy, request.action):
            if entry.deny:
                if _applies(entry, request, variables):
                    return Match(policy, entry.stmt), allow
            elif allow is None and _applies(entry, request, variables):
                allow = Match(policy, entry.stmt)
    return None, allow


def _what(request: RequestContext) -> str:
    return f"'{request.action}' on '{request.resource}'"


def evaluate(
    request: RequestContext,
    *,
    identity_policies: Sequence[PolicyDocument],
    boundary: PolicyDocument | None = None,
    scp_levels: Sequence[Sequence[PolicyDocument]] | None = None,
    session_policy: PolicyDocument | None = None,
    management_account: bool = False,
) -> Evaluation:
    """Decide ``request`` the way AWS does; see the module docstring for the order."""
    what = _what(request)
    scps = scp_levels if scp_levels is not None and not management_account else None
    layers = _layers(identity_policies, boundary, scps, session_policy)
    results = []
    for layer, label, policies in layers:
        deny, allow = scan(policies, request)
        if deny is not None:
            return Evaluation(
                "explicitDeny",
                layer,
                deny.policy.source,
                deny.statement.label,
                f"{what} is explicitly denied by statement {_stmt(deny.statement)} of "
                f"{_layer_name(layer, label)} '{deny.policy.source}'",
            )
        results.append((layer, label, policies, allow))

    for layer, label, policies, allow in results:
        if allow is None:
            return _implicit_deny(what, layer, label, policies)

    granted = next(a for layer, _, _, a in results if layer == "identity")
    assert granted is not None
    limits = [name for name, given in (("every SCP level", scps), ("the permissions boundary", boundary),
                                       ("the session policy", session_policy)) if given is not None]
    extra = f"; {', '.join(limits)} also allow{'s' if len(limits) == 1 else ''} it" if limits else ""
    if management_account and scp_levels is not None:
        extra += "; SCPs do not apply to the management account"
    return Evaluation(
        "allowed",
        "identity",
        granted.policy.source,
        granted.statement.label,
        f"{what} is allowed by statement {_stmt(granted.statement)} of identity policy "
        f"'{granted.policy.source}'{extra}",
    )


def _layers(
    identity_policies: Sequence[PolicyDocument],
    boundary: PolicyDocument | None,
    scp_levels: Sequence[Sequence[PolicyDocument]] | None,
    session_policy: PolicyDocument | None,
) -> list[tuple[Layer, str, Sequence[PolicyDocument]]]:
    """The layers a request must pass, in the order they are read: each SCP level (when SCPs
    apply), the identity policies, the permissions boundary, the session policy."""
    layers: list[tuple[Layer, str, Sequence[PolicyDocument]]] = [
        ("scp", f"scp level {i}", level) for i, level in enumerate(scp_levels or ())
    ]
    layers.append(("identity", "identity policies", identity_policies))
    if boundary is not None:
        layers.append(("boundary", "permissions boundary", [boundary]))
    if session_policy is not None:
        layers.append(("session", "session policy", [session_policy]))
    return layers


def _implicit_deny(what: str, layer: Layer, label: str, policies: Sequence[PolicyDocument]) -> Evaluation:
    """The answer when ``layer`` has no statement allowing the request."""
    if layer == "scp":
        sources = ", ".join(p.source for p in policies) or "no SCP attached"
        return Evaluation(
            "implicitDeny",
            "scp",
            label,
            None,
            f"{what} is implicitly denied: no SCP at {label} ({sources}) allows it",
        )
    if layer == "identity":
        if not policies:
            why = "the principal has no identity-based policy"
        else:
            why = "no identity-based policy allows it"
        return Evaluation("implicitDeny", "identity", None, None, f"{what} is implicitly denied: {why}")
    return Evaluation(
        "implicitDeny",
        layer,
        policies[0].source,
        None,
        f"{what} is implicitly denied: the {label} '{policies[0].source}' does not allow it",
    )


def _stmt(stmt: Statement) -> str:
    return f"'{stmt.sid}'" if stmt.sid else str(stmt.index)


def _layer_name(layer: Layer, label: str) -> str:
    return {
        "scp": f"the SCP at {label}",
        "identity": "identity policy",
        "boundary": "the permissions boundary",
        "session": "the session policy",
    }[layer]


def evaluate_scps(
    request: RequestContext,
    scp_levels: Sequence[Sequence[PolicyDocument]],
    *,
    management_account: bool = False,
) -> Evaluation:
    """The SCP side alone: no explicit deny in any level and an allow at every level."""
    what = _what(request)
    if management_account:
        reason = f"SCPs do not restrict {what}: the account is the management account"
        return Evaluation("allowed", "scp", None, None, reason)
    allows: list[Match] = []
    for i, level in enumerate(scp_levels):
        deny, allow = scan(level, request)
        if deny is not None:
            return Evaluation(
                "explicitDeny", "scp", deny.policy.source, deny.statement.label,
                f"{what} is explicitly denied by statement {_stmt(deny.statement)} of "
                f"the SCP at scp level {i} '{deny.policy.source}'",
            )
        if allow is None:
            sources = ", ".join(p.source for p in level) or "no SCP attached"
            return Evaluation(
                "implicitDeny", "scp", f"scp level {i}", None,
                f"{what} is implicitly denied: no SCP at scp level {i} ({sources}) allows it",
            )
        allows.append(allow)
    if not allows:
        return Evaluation("allowed", "scp", None, None, f"no SCP applies to {what}")
    last = allows[-1]
    return Evaluation(
        "allowed", "scp", last.policy.source, last.statement.label,
        f"every SCP level allows {what} ({len(allows)} level{'s' if len(allows) != 1 else ''})",
    )
