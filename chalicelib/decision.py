"""The decision: may this caller have a token for this (database, db user)?

Default deny; any matching deny beats every allow; only ``auth: iam`` users are vendable; a
condition that cannot be evaluated (no org id, no source IP) fails closed: it never lets an
allow through and it always lets a deny through.

Rules are indexed by what their principal patterns fix, so a decision looks at the handful of
rules that could name the caller, whether the policy has 100 rules or 10,000, and however many
of them are wildcards. A principal pattern (``arn:PARTITION:SERVICE::ACCOUNT:RESOURCE``) and a
caller's ARN both have exactly five colons, and no colon appears anywhere else in either: so a
``*`` or ``?`` can never match a colon, and the pattern matches segment by segment. A pattern
is filed under its literal partition and account (or "any"), then under its resource's literal
prefix; its resource's literal suffix is checked before any matching. A decision looks up the
caller's own partition and account, the resource prefixes present, and matches only the
patterns that survive, each against the caller's short segments.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from chalicelib.identity import CallerIdentity
from chalicelib.policy.model import AccessPolicy, Conditions, Database, Rule
from chalicelib.policy.patterns import compile_pattern, has_wildcard, literal_prefix

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
    segments: tuple[str, ...] | None  # partition, service, account, resource (None: the pattern "*")
    suffix: str  # the resource's literal suffix


_ANY = ""  # the key of a wildcard partition or account


def _segments(arn: str) -> tuple[str, ...] | None:
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[3] != "":
        return None
    return parts[1], parts[2], parts[4], parts[5]


def _literal_suffix(pattern: str) -> str:
    return literal_prefix(pattern[::-1])[::-1]


class _ByLength:
    """Entries filed under a literal text; looked up with a caller's text of every length present."""

    def __init__(self) -> None:
        self.by_text: dict[str, list[_Entry]] = {}
        self.lengths: list[int] = []

    def add(self, text: str, entry: _Entry) -> None:
        if text not in self.by_text:
            self.by_text[text] = []
            self.lengths = sorted({*self.lengths, len(text)})
        self.by_text[text].append(entry)


class _Buckets:
    """Entries of one (partition, account) key, by their resource's literal prefix, then by its
    literal suffix: a decision reaches only the entries whose both ends fit the caller."""

    def __init__(self) -> None:
        self.by_prefix: dict[str, _ByLength] = {}
        self.lengths: list[int] = []

    def add(self, prefix: str, entry: _Entry) -> None:
        if prefix not in self.by_prefix:
            self.by_prefix[prefix] = _ByLength()
            self.lengths = sorted({*self.lengths, len(prefix)})
        self.by_prefix[prefix].add(entry.suffix, entry)

    def candidates(self, resource: str) -> Iterator[_Entry]:
        for length in self.lengths:
            if length > len(resource):
                break
            suffixes = self.by_prefix.get(resource[:length])
            if suffixes is None:
                continue
            for size in suffixes.lengths:
                if size > len(resource):
                    break
                yield from suffixes.by_text.get(resource[len(resource) - size:], ())


class PolicyIndex:
    """An access policy compiled for fast decisions."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy
        self._keys: dict[tuple[str, str], _Buckets] = {}
        self._unparsed: list[_Entry] = []  # "*" (and any pattern not of the ARN's shape)
        for order, rule in enumerate(policy.rules):
            for pattern in rule.principals:
                self._file(order, rule, pattern)

    def _file(self, order: int, rule: Rule, pattern: str) -> None:
        segments = _segments(pattern)
        if segments is None:
            self._unparsed.append(_Entry(order, rule, pattern, None, ""))
            return
        partition, _, account, resource = segments
        key = (_ANY if has_wildcard(partition) else partition, _ANY if has_wildcard(account) else account)
        entry = _Entry(order, rule, pattern, segments, _literal_suffix(resource))
        self._keys.setdefault(key, _Buckets()).add(literal_prefix(resource), entry)

    # -- candidates ---------------------------------------------------------------------
    def _candidates(self, identity: CallerIdentity) -> list[Rule]:
        principal = identity.principal
        hits: dict[int, Rule] = {}
        for entry in self._unparsed:
            if entry.order not in hits and _pattern_applies(entry.pattern, identity) \
                    and compile_pattern(entry.pattern).matches(principal):
                hits[entry.order] = entry.rule
        caller = _segments(principal)
        if caller is None:
            return [hits[k] for k in sorted(hits)]
        partition, _, account, resource = caller
        matched: dict[str, bool] = {}  # a pattern many rules repeat is matched once
        for key in {(partition, account), (partition, _ANY), (_ANY, account), (_ANY, _ANY)}:
            buckets = self._keys.get(key)
            if buckets is None:
                continue
            for entry in buckets.candidates(resource):
                if entry.order in hits:
                    continue
                answer = matched.get(entry.pattern)
                if answer is None:
                    answer = matched[entry.pattern] = _pattern_applies(entry.pattern, identity) \
                        and _segments_match(entry, caller)
                if answer:
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


def _segments_match(entry: _Entry, caller: tuple[str, ...]) -> bool:
    assert entry.segments is not None  # filed under a key only when it has segments
    return all(compile_pattern(p).matches(v) for p, v in zip(entry.segments, caller, strict=True))


def _any_match(patterns: tuple[str, ...], value: str) -> bool:
    return any(compile_pattern(p).matches(value) for p in patterns)


def _pattern_applies(pattern: str, identity: CallerIdentity) -> bool:
    """Root and federated users match only patterns that name them in so many words."""
    if identity.kind == "root":
        return pattern.rsplit(":", 1)[-1] == "root"
    if identity.kind == "federated-user":
        return pattern.rsplit(":", 1)[-1].startswith("federated-user/")
    return True
