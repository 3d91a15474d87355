"""The decision: may this caller have a token for this (database, db user)?

Default deny; any matching deny beats every allow; only ``auth: iam`` users are vendable; a
condition that cannot be evaluated (no org id, no source IP) fails closed: it never lets an
allow through and it always lets a deny through.

Rules are indexed by the literal prefix of their principal patterns, so a decision looks at
the handful of rules that could name the caller, whether the policy has 100 rules or 10,000.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from chalicelib.identity import CallerIdentity
from chalicelib.policy.model import AccessPolicy, Conditions, Database, Rule
from chalicelib.policy.patterns import compile_pattern, literal_prefix

__all__ = ["Decision", "PolicyIndex", "Reason", "principal_matches"]

Reason = Literal[
    "allowed",
    "denied_by_rule",
    "no_matching_rule",
    "condition_not_met",
    "condition_unevaluable",
    "unknown_database",
    "unknown_db_user",
    "not_iam_user",
    "policy_unavailable",
    "rate_limited",
    "no_live_grant",
]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason
    rule: str | None = None
    #: allowed only under a live grant (the rule says ``grant: required``): the caller still
    #: needs one before a token is vended
    grant_required: bool = False


@dataclass(frozen=True)
class _Entry:
    order: int
    rule: Rule
    pattern: str


class PolicyIndex:
    """An access policy compiled for fast decisions."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy
        self._buckets: dict[str, list[_Entry]] = {}
        for order, rule in enumerate(policy.rules):
            for pattern in rule.principals:
                self._buckets.setdefault(literal_prefix(pattern), []).append(_Entry(order, rule, pattern))
        self._prefix_lengths = sorted({len(prefix) for prefix in self._buckets})

    # -- candidates ---------------------------------------------------------------------
    def _candidates(self, identity: CallerIdentity) -> list[Rule]:
        principal = identity.principal
        hits: dict[int, Rule] = {}
        for length in self._prefix_lengths:
            if length > len(principal):
                break
            for entry in self._buckets.get(principal[:length], ()):
                if entry.order in hits or not _pattern_applies(entry.pattern, identity):
                    continue
                if compile_pattern(entry.pattern).matches(principal):
                    hits[entry.order] = entry.rule
        return [hits[k] for k in sorted(hits)]

    # -- decisions ----------------------------------------------------------------------
    def decide(self, identity: CallerIdentity, database: str, db_user: str) -> Decision:
        db = self.policy.databases.get(database)
        if db is None:
            return Decision(False, "unknown_database")
        user = db.users.get(db_user)
        if user is None:
            return Decision(False, "unknown_db_user")
        if not user.vendable:
            return Decision(False, "not_iam_user")
        return self._decide_rules(self._candidates(identity), identity, database, db_user)

    def _decide_rules(self, rules: list[Rule], identity: CallerIdentity, database: str, db_user: str) -> Decision:
        allow: Rule | None = None
        grant_allow: Rule | None = None
        blocked: Reason = "no_matching_rule"
        for rule in rules:
            if not (_any_match(rule.databases, database) and _any_match(rule.db_users, db_user)):
                continue
            verdict = evaluate_conditions(rule.conditions, identity)
            if rule.effect == "deny":
                if verdict is not False:  # True, or cannot evaluate: fail closed
                    return Decision(False, "denied_by_rule", rule.id)
            elif verdict is True and rule.grant_required:
                grant_allow = grant_allow or rule
            elif verdict is True:
                allow = allow or rule
            elif verdict is None:
                blocked = "condition_unevaluable"
            elif blocked == "no_matching_rule":
                blocked = "condition_not_met"
        if allow is not None:  # a standing allow needs no grant
            return Decision(True, "allowed", allow.id)
        if grant_allow is not None:
            return Decision(True, "allowed", grant_allow.id, grant_required=True)
        return Decision(False, blocked)

    def visible_databases(self, identity: CallerIdentity) -> list[tuple[Database, list[str]]]:
        """Every database with the db users this caller may ask for (``GET /v1/databases``)."""
        rules = self._candidates(identity)
        out: list[tuple[Database, list[str]]] = []
        for db in self.policy.databases.values():
            users = [
                name
                for name, user in db.users.items()
                if user.vendable and self._decide_rules(rules, identity, db.name, name).allowed
            ]
            if users:
                out.append((db, users))
        return out


def evaluate_conditions(conditions: Conditions, identity: CallerIdentity) -> bool | None:
    """True when every condition holds, False when one fails, None when one cannot be evaluated."""
    if conditions.empty:
        return True
    results: list[bool | None] = []
    if conditions.org_ids is not None:
        results.append(None if identity.org_id is None else identity.org_id in conditions.org_ids)
    if conditions.source_ips is not None:
        if identity.source_ip is None:
            results.append(None)
        else:
            ip = ipaddress.ip_address(identity.source_ip)
            results.append(any(ip in net for net in conditions.source_ips))
    if False in results:
        return False
    if None in results:
        return None
    return True


def principal_matches(patterns: tuple[str, ...], identity: CallerIdentity) -> bool:
    """Whether ``identity`` is named by one of these principal patterns (as rules match callers;
    used for a rule's ``approvers``)."""
    return any(_pattern_applies(p, identity) and compile_pattern(p).matches(identity.principal)
               for p in patterns)


def _any_match(patterns: tuple[str, ...], value: str) -> bool:
    return any(compile_pattern(p).matches(value) for p in patterns)


def _pattern_applies(pattern: str, identity: CallerIdentity) -> bool:
    """Root and federated users match only patterns that name them in so many words."""
    if identity.kind == "root":
        return pattern.rsplit(":", 1)[-1] == "root"
    if identity.kind == "federated-user":
        return pattern.rsplit(":", 1)[-1].startswith("federated-user/")
    return True
