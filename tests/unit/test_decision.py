"""The decision engine: default deny, deny wins, patterns, conditions that fail closed."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Literal

import pytest

from chalicelib.decision import PolicyIndex
from chalicelib.identity import CallerIdentity, identity_from_arn
from chalicelib.policy.model import AccessPolicy, Auth, Conditions, Database, DbUser, Rule
from chalicelib.policy.patterns import compile_pattern

ACCT = "111122223333"


def db(name: str = "orders-prod", **users: Auth) -> Database:
    auths: dict[str, Auth] = users or {"orders_app": "iam", "orders_owner": "iam", "etl_legacy": "kerberos"}
    return Database(name=name, engine="postgres", region="us-east-1", kind="instance", identifier=name,
                    users={u: DbUser(u, a) for u, a in auths.items()})


def rule(id: str, effect: Literal["allow", "deny"] = "allow",
         principals: Iterable[str] = (f"arn:aws:iam::{ACCT}:role/orders-api-*",),
         databases: Iterable[str] = ("orders-prod",), db_users: Iterable[str] = ("orders_app",),
         **conditions: Any) -> Rule:
    return Rule(id=id, effect=effect, principals=tuple(principals), databases=tuple(databases),
                db_users=tuple(db_users), conditions=Conditions(**conditions))


def index(*rules: Rule, databases: Iterable[Database] | None = None) -> PolicyIndex:
    dbs = databases or [db(), db("orders-staging")]
    return PolicyIndex(AccessPolicy(databases={d.name: d for d in dbs}, rules=tuple(rules)))


def caller(arn: str = f"arn:aws:sts::{ACCT}:assumed-role/orders-api-blue/s1", org: str | None = "o-abc123def4",
           ip: str | None = "10.1.2.3") -> CallerIdentity:
    return identity_from_arn(arn, org_id=org, source_ip=ip)


def test_allow_by_pattern_through_assumed_role() -> None:
    d = index(rule("orders-api")).decide(caller(), "orders-prod", "orders_app")
    assert (d.allowed, d.rule, d.reason) == (True, "orders-api", "allowed")


def test_default_deny() -> None:
    d = index(rule("orders-api")).decide(caller(f"arn:aws:iam::{ACCT}:role/billing"), "orders-prod", "orders_app")
    assert (d.allowed, d.reason) == (False, "no_matching_rule")


def test_deny_beats_allow_whatever_the_order() -> None:
    deny = rule("no-blue", effect="deny", principals=[f"arn:aws:iam::{ACCT}:role/*-blue"])
    for rules in ((rule("orders-api"), deny), (deny, rule("orders-api"))):
        d = index(*rules).decide(caller(), "orders-prod", "orders_app")
        assert (d.allowed, d.reason, d.rule) == (False, "denied_by_rule", "no-blue")


def test_question_mark_and_star_on_databases_and_users() -> None:
    r = rule("x", databases=["orders-*"], db_users=["orders_???"])
    idx = index(r)
    assert idx.decide(caller(), "orders-staging", "orders_app").allowed
    assert not idx.decide(caller(), "orders-staging", "orders_owner").allowed


def test_unknown_names_and_kerberos_users_are_refused_with_reasons() -> None:
    idx = index(rule("all", principals=["*"], databases=["*"], db_users=["*"]))
    assert idx.decide(caller(), "nope", "orders_app").reason == "unknown_database"
    assert idx.decide(caller(), "orders-prod", "nobody").reason == "unknown_db_user"
    assert idx.decide(caller(), "orders-prod", "etl_legacy").reason == "not_iam_user"


def test_account_matters() -> None:
    idx = index(rule("orders-api"))
    assert not idx.decide(caller("arn:aws:sts::444455556666:assumed-role/orders-api-blue/s"), "orders-prod", "orders_app").allowed


@pytest.mark.parametrize(
    "conditions, org, ip, allowed, reason",
    [
        ({"org_ids": ("o-abc123def4",)}, "o-abc123def4", None, True, "allowed"),
        ({"org_ids": ("o-abc123def4",)}, "o-zzzzzzzzzz", None, False, "condition_not_met"),
        ({"org_ids": ("o-abc123def4",)}, None, None, False, "condition_unevaluable"),
        ({"source_ips": (ipaddress.ip_network("10.0.0.0/8"),)}, None, "10.9.9.9", True, "allowed"),
        ({"source_ips": (ipaddress.ip_network("10.0.0.0/8"),)}, None, "192.0.2.1", False, "condition_not_met"),
        ({"source_ips": (ipaddress.ip_network("10.0.0.0/8"),)}, None, None, False, "condition_unevaluable"),
        ({"org_ids": ("o-abc123def4",), "source_ips": (ipaddress.ip_network("10.0.0.0/8"),)},
         "o-abc123def4", "10.0.0.1", True, "allowed"),
        ({"org_ids": ("o-abc123def4",), "source_ips": (ipaddress.ip_network("10.0.0.0/8"),)},
         "o-abc123def4", "192.0.2.1", False, "condition_not_met"),
    ],
)
def test_allow_conditions(conditions: dict[str, Any], org: str | None, ip: str | None, allowed: bool,
                          reason: str) -> None:
    d = index(rule("c", **conditions)).decide(caller(org=org, ip=ip), "orders-prod", "orders_app")
    assert (d.allowed, d.reason) == (allowed, reason)


def test_deny_condition_that_cannot_be_evaluated_still_denies() -> None:
    deny = rule("deny-outside", effect="deny", source_ips=(ipaddress.ip_network("192.0.2.0/24"),))
    idx = index(rule("orders-api"), deny)
    assert idx.decide(caller(ip=None), "orders-prod", "orders_app").reason == "denied_by_rule"
    assert idx.decide(caller(ip="10.0.0.1"), "orders-prod", "orders_app").allowed
    assert not idx.decide(caller(ip="192.0.2.7"), "orders-prod", "orders_app").allowed


def test_root_and_federated_users_never_match_role_or_wildcard_patterns_by_accident() -> None:
    idx = index(rule("any", principals=["*", f"arn:aws:iam::{ACCT}:*", "arn:aws:*"], databases=["*"], db_users=["*"]))
    for arn in (f"arn:aws:iam::{ACCT}:root", f"arn:aws:sts::{ACCT}:federated-user/orders-api-blue"):
        assert not idx.decide(caller(arn), "orders-prod", "orders_app").allowed
    assert idx.decide(caller(f"arn:aws:iam::{ACCT}:user/alice"), "orders-prod", "orders_app").allowed
    named = index(rule("root", principals=[f"arn:aws:iam::{ACCT}:root"]))
    assert named.decide(caller(f"arn:aws:iam::{ACCT}:root"), "orders-prod", "orders_app").allowed


def test_role_pattern_does_not_match_user_of_same_name() -> None:
    idx = index(rule("r", principals=[f"arn:aws:iam::{ACCT}:role/orders-api-blue"]))
    assert not idx.decide(caller(f"arn:aws:iam::{ACCT}:user/orders-api-blue"), "orders-prod", "orders_app").allowed


def test_visible_databases_lists_only_what_the_caller_may_ask_for() -> None:
    idx = index(rule("orders-api", databases=["orders-*"]),
                rule("no-staging", effect="deny", databases=["orders-staging"], db_users=["*"]))
    visible = idx.visible_databases(caller())
    assert [(d.name, users) for d, users in visible] == [("orders-prod", ["orders_app"])]


def test_ten_thousand_rules_still_find_the_right_one() -> None:
    rules = [rule(f"r{i}", principals=[f"arn:aws:iam::{ACCT}:role/svc-{i}-*"]) for i in range(10_000)]
    idx = index(*rules)
    d = idx.decide(caller(f"arn:aws:sts::{ACCT}:assumed-role/svc-7777-blue/s"), "orders-prod", "orders_app")
    assert (d.allowed, d.rule) == (True, "r7777")
    assert len(idx._candidates(caller(f"arn:aws:sts::{ACCT}:assumed-role/svc-7777-blue/s"))) == 1


# -- the index by partition, account and resource prefix/suffix gives whole-ARN answers ------------

INDEX_PATTERNS = [
    "*", f"arn:aws:iam::{ACCT}:role/orders-api-*", f"arn:*:iam::{ACCT}:role/*", "arn:*:iam::*:role/orders-*",
    "arn:aws:iam::*:role/*-blue", "arn:a?s:*::1111222233??:role/*", "arn:aws-cn:iam::*:role/*",
    "arn:*:iam::222233334444:role/*", "arn:*:*::*:*", "arn:*:iam::*:user/*", "arn:aws:iam::*:role/*api*blu?",
    "arn:aws:iam::*:root", "arn:aws:iam::*:federated-user/*", "arn:aws:iam::*:role/orders-api-blue",
]
INDEX_CALLERS = [
    f"arn:aws:sts::{ACCT}:assumed-role/orders-api-blue/s1", f"arn:aws:iam::{ACCT}:user/alice",
    "arn:aws:sts::222233334444:assumed-role/orders-api-green/s", f"arn:aws-cn:iam::{ACCT}:role/x/orders-api-blue",
    f"arn:aws:iam::{ACCT}:root", f"arn:aws:sts::{ACCT}:federated-user/bob",
]


@pytest.mark.parametrize("pattern", INDEX_PATTERNS)
def test_the_pattern_index_decides_as_matching_the_whole_arn_does(pattern: str) -> None:
    idx = index(rule("r", principals=(pattern,)))
    for arn in INDEX_CALLERS:
        who = caller(arn)
        applies = True
        if who.kind == "root":
            applies = pattern.rsplit(":", 1)[-1] == "root"
        elif who.kind == "federated-user":
            applies = pattern.rsplit(":", 1)[-1].startswith("federated-user/")
        expected = applies and compile_pattern(pattern).matches(who.principal)
        assert idx.decide(who, "orders-prod", "orders_app").allowed == expected, (pattern, arn)
