"""Hypothesis properties of the evaluator: denies only ever take away, narrower resources never
grant more, statement order is irrelevant, and wildcard matching agrees with fnmatch."""
from __future__ import annotations

import fnmatch
import random
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.iam.evaluator import Evaluation, evaluate
from chalicelib.iam.model import RequestContext, parse_policy
from chalicelib.iam.patterns import matches
from tests.support.examples import examples

SETTINGS = settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE_ARNS = [
    "arn:aws:rds-db:us-east-1:111122223333:dbuser:db-ABCDEFGH/app",
    "arn:aws:rds-db:us-east-1:111122223333:dbuser:db-ABCDEFGH/owner",
    "arn:aws:rds-db:eu-west-1:111122223333:dbuser:cluster-XYZ123/app",
    "arn:aws:rds-db:us-east-1:444455556666:dbuser:prx-0a1b2c3d/report",
    "arn:aws:s3:::bucket/home/alice/notes.txt",
]
ACTIONS = ["rds-db:connect", "s3:GetObject", "iam:GetUser"]
ACTION_PATTERNS = ["rds-db:connect", "rds-db:*", "RDS-DB:Connect", "s3:*", "*", "rds-db:conn?ct", "iam:*", "s3:Get*"]
SAFE = "abcdefgh0123/-"
T = TypeVar("T")


@st.composite
def wildcard_pattern(draw: st.DrawFn, base: str | None = None) -> str:
    """A base ARN with a few characters or runs replaced by * or ?."""
    text = base if base is not None else draw(st.sampled_from(BASE_ARNS))
    chars = list(text)
    for _ in range(draw(st.integers(0, 3))):
        if not chars:
            break
        i = draw(st.integers(0, len(chars) - 1))
        j = draw(st.integers(i, min(len(chars), i + 12)))
        chars[i:j] = [draw(st.sampled_from(["*", "?"]))]
    return "".join(chars)


@st.composite
def statement(draw: st.DrawFn, effect: str | None = None) -> dict[str, Any]:
    stmt: dict[str, Any] = {
        "Effect": effect or draw(st.sampled_from(["Allow", "Allow", "Allow", "Deny"])),
        draw(st.sampled_from(["Action", "Action", "NotAction"])): draw(st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=2)),
        draw(st.sampled_from(["Resource", "Resource", "NotResource"])): draw(st.lists(wildcard_pattern(), min_size=1, max_size=2)),
    }
    if draw(st.booleans()):
        op = draw(st.sampled_from(["StringEquals", "StringNotEquals", "StringLikeIfExists", "ForAllValues:StringEquals", "ForAnyValue:StringEquals", "Null"]))
        value = draw(st.sampled_from(["true", "false"])) if op == "Null" else draw(st.sampled_from(["dba", "sre", "d*"]))
        stmt["Condition"] = {op: {"aws:PrincipalTag/team": value}}
    return stmt


def policy(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


@st.composite
def request(draw: st.DrawFn) -> RequestContext:
    context: dict[str, tuple[str, ...]] = {}
    if draw(st.booleans()):
        context["aws:PrincipalTag/team"] = (draw(st.sampled_from(["dba", "sre", "dev"])),)
    return RequestContext(draw(st.sampled_from(ACTIONS)), draw(st.sampled_from(BASE_ARNS)), context)


@st.composite
def world(draw: st.DrawFn) -> dict[str, Any]:
    """Policies in every layer; each optional layer is absent two times in three, so that a
    fair share of requests is allowed (the interesting case for the properties)."""

    def maybe(strategy: st.SearchStrategy[T]) -> T | None:
        return draw(strategy) if draw(st.integers(0, 2)) == 0 else None

    identity = draw(st.lists(st.lists(statement(), min_size=1, max_size=3), min_size=0, max_size=3))
    if draw(st.booleans()):
        identity.append([{"Effect": "Allow", "Action": "*", "Resource": "*"}])
    return {
        "identity": identity,
        "boundary": maybe(st.lists(statement(), min_size=1, max_size=3)),
        "session": maybe(st.lists(statement(), min_size=1, max_size=2)),
        "scp": maybe(st.lists(st.lists(st.lists(statement(), min_size=1, max_size=2), min_size=1, max_size=2), min_size=1, max_size=3)),
        "management": draw(st.booleans()),
    }


def run(w: dict[str, Any], req: RequestContext) -> Evaluation:
    return evaluate(
        req,
        identity_policies=[parse_policy(policy(s), f"identity{i}") for i, s in enumerate(w["identity"])],
        boundary=parse_policy(policy(w["boundary"]), "boundary") if w["boundary"] else None,
        session_policy=parse_policy(policy(w["session"]), "session") if w["session"] else None,
        scp_levels=None if w["scp"] is None else [
            [parse_policy(policy(s), f"scp{i}.{j}") for j, s in enumerate(level)] for i, level in enumerate(w["scp"])
        ],
        management_account=w["management"],
    )


@SETTINGS
@given(world(), request(), statement(effect="Deny"), st.data())
def test_adding_a_deny_never_turns_a_denial_into_an_allow(
    w: dict[str, Any],
    req: RequestContext,
    deny: dict[str, Any],
    data: st.DataObject,
) -> None:
    before = run(w, req)
    places = ["identity"] + [p for p in ("boundary", "session") if w[p]] + (["scp"] if w["scp"] else [])
    where = data.draw(st.sampled_from(places))
    if where == "identity":
        if w["identity"]:
            w["identity"][data.draw(st.integers(0, len(w["identity"]) - 1))].append(deny)
        else:
            w["identity"].append([deny])
    elif where == "scp":
        level = w["scp"][data.draw(st.integers(0, len(w["scp"]) - 1))]
        level[data.draw(st.integers(0, len(level) - 1))].append(deny)
    else:
        w[where].append(deny)
    after = run(w, req)
    if not before.allowed:
        assert not after.allowed
    assert after.decision in (before.decision, "explicitDeny")


def _narrow(pattern: str, data: st.DataObject) -> str:
    spots = [i for i, c in enumerate(pattern) if c in "*?"]
    if not spots:
        return pattern
    i = data.draw(st.sampled_from(spots))
    literal = data.draw(st.text(alphabet=SAFE, min_size=1, max_size=3))
    if pattern[i] == "*":
        replacement = data.draw(st.sampled_from(["?", "", literal + "*", "*" + literal, literal]))
    else:
        replacement = literal[0]
    return pattern[:i] + replacement + pattern[i + 1:]


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world(), st.data())
def test_narrowing_an_allowed_resource_never_widens_what_is_allowed(w: dict[str, Any], data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(BASE_ARNS))
    wide = data.draw(wildcard_pattern(base=base))
    narrow = wide
    for _ in range(data.draw(st.integers(1, 3))):
        narrow = _narrow(narrow, data)
    allow = {"Effect": "Allow", "Action": data.draw(st.sampled_from(ACTION_PATTERNS)), "Resource": "PLACEHOLDER"}
    w["identity"].append([allow])
    # Requests that the wide pattern is likely to match: the base ARN and variants of it.
    resources = [base, base + "x", base.replace("app", "a"), base[:-1], *BASE_ARNS]
    for resource in resources:
        for action in ACTIONS:
            req = RequestContext(action, resource, {})
            allow["Resource"] = wide
            wide_result = run(w, req)
            allow["Resource"] = narrow
            narrow_result = run(w, req)
            if narrow_result.allowed:
                assert wide_result.allowed, (wide, narrow, resource)


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world(), request(), st.randoms())
def test_statement_order_does_not_change_the_decision(
    w: dict[str, Any],
    req: RequestContext,
    rnd: random.Random,
) -> None:
    before = run(w, req)
    for statements in w["identity"]:
        rnd.shuffle(statements)
    rnd.shuffle(w["identity"])
    assert run(w, req).decision == before.decision


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet="ab*?/", max_size=8), st.text(alphabet="ab/", max_size=8))
def test_string_like_agrees_with_fnmatch(pattern: str, value: str) -> None:
    assert matches(pattern, value, lambda key: None, variables=True) == fnmatch.fnmatchcase(value, pattern)
