"""Facts about ``grant: required`` rules that need the whole policy: which (database, db user)
pairs sit behind one, and which of those a rule without a grant also reaches."""
from __future__ import annotations

from chalicelib.policy.model import AccessPolicy, Rule
from chalicelib.policy.patterns import compile_pattern

__all__ = ["rule_covers", "granted_pairs", "grant_bypasses"]


def rule_covers(rule: Rule, database: str, db_user: str) -> bool:
    """Whether ``rule`` names this (database, db user)."""
    return (any(compile_pattern(p).matches(database) for p in rule.databases)
            and any(compile_pattern(p).matches(db_user) for p in rule.db_users))


def granted_pairs(policy: AccessPolicy) -> list[tuple[str, str]]:
    """Every declared vendable (database, db user) behind at least one ``grant: required`` rule."""
    grant_rules = [r for r in policy.rules if r.grant_required]
    return [(db.name, user.name) for db, user in policy.targets()
            if user.vendable and any(rule_covers(r, db.name, user.name) for r in grant_rules)]


def grant_bypasses(policy: AccessPolicy) -> list[str]:
    """One warning per db user behind a ``grant: required`` rule that an allow rule without a
    grant also reaches (for some principal): the grant can be walked around."""
    warnings = []
    for database, db_user in granted_pairs(policy):
        standing = [r.id for r in policy.rules
                    if r.effect == "allow" and not r.grant_required and rule_covers(r, database, db_user)]
        if standing:
            warnings.append(f"db user '{db_user}' of '{database}' needs a grant under one rule but rule "
                            f"'{standing[0]}' reaches it without one")
    return warnings
