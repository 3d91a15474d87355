"""``*``/``?`` matching: the same answers as fnmatch (plain) and as the segment-aware regex
(IAM resources), and no exponential blow-up on hostile patterns anywhere a pattern is read:
access-policy principals, databases and db users, IAM resources, actions and ``StringLike``.

The hostile tests bound the time of a handful of decisions to well under a second: a
backtracking matcher takes seconds to minutes on them (a 64-character caller against eight
stars took 7 s), a linear one microseconds. The bound catches a blow-up; speed itself is
measured by ``make bench`` (``decide_worst``)."""
from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.decision import PolicyIndex
from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.model import RequestContext, parse_policy
from chalicelib.iam.patterns import action_matches, matches, resource_matches, tokenize
from chalicelib.identity import identity_from_arn
from chalicelib.policy.loader import load_policy_text
from chalicelib.wildcard import QMARK, STAR, GlobToken, compile_glob, glob
from tests.support.examples import examples

#: CPU seconds for a whole hostile test; linear matching needs milliseconds. CPU time, not wall
#: time: what is bounded is the work, which a loaded machine does not change
BLOW_UP_BOUND = 1.0


def _reference(tokens: tuple[GlobToken, ...], arn: bool) -> re.Pattern[str]:
    """The backtracking regex the matcher replaced: the definition of the semantics."""
    parts = []
    for pos, tok in enumerate(tokens):
        if isinstance(tok, str):
            parts.append(re.escape(tok))
        elif tok == STAR:
            nxt = tokens[pos + 1] if pos + 1 < len(tokens) else None
            crosses = not arn or nxt is None or (isinstance(nxt, str) and nxt.startswith(":"))
            parts.append(".*" if crosses else "[^:]*")
        else:
            parts.append("[^:]" if arn else ".")
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


token = st.one_of(st.just(STAR), st.just(QMARK), st.text(alphabet="ab:/", min_size=0, max_size=3))


# -- agreement --------------------------------------------------------------------------------
@settings(max_examples=examples(1500), deadline=None)
@given(st.text(alphabet="ab*?/:.", max_size=10), st.text(alphabet="ab/:.\n", max_size=14))
def test_plain_patterns_agree_with_fnmatch(pattern: str, value: str) -> None:
    assert glob(pattern).matches(value) == fnmatch.fnmatchcase(value, pattern)


@settings(max_examples=examples(1500), deadline=None)
@given(st.lists(token, max_size=8).map(tuple), st.text(alphabet="ab:/", max_size=16))
def test_resource_patterns_agree_with_the_segment_regex(tokens: tuple[GlobToken, ...], value: str) -> None:
    assert compile_glob(tokens, arn=True).matches(value) == (_reference(tokens, True).match(value) is not None)


@settings(max_examples=examples(500), deadline=None)
@given(st.lists(token, max_size=8).map(tuple), st.text(alphabet="aAbB:/", max_size=12))
def test_ignore_case_agrees_with_lowercased_fnmatch(tokens: tuple[GlobToken, ...], value: str) -> None:
    pattern = "".join(t if isinstance(t, str) else t[0] for t in tokens)
    upper = tuple(t.upper() if isinstance(t, str) else t for t in tokens)
    assert compile_glob(upper, ignore_case=True).matches(value) == fnmatch.fnmatchcase(value.lower(), pattern.lower())


def test_regex_and_fnmatch_specials_are_literal() -> None:
    assert glob("a[b]c.*").matches("a[b]c.d")
    assert not glob("a[b]c").matches("abc")
    assert glob("a\\*").matches("a\\xyz")
    assert not glob("a.c").matches("abc")


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("arn:aws:rds-db:*:111122223333:dbuser:db-ABC/app", "arn:aws:rds-db:us-east-1:111122223333:dbuser:db-ABC/app", True),
        # a '*' inside a segment does not cross colons, one ending its segment does
        ("arn:aws:s3:::bu*et", "arn:aws:s3:::bu:cket", False),
        ("arn:aws:rds-db:us-east-1:*", "arn:aws:rds-db:us-east-1:1:dbuser:x/y", True),
        ("arn:aws:rds-db:*:1:*/app", "arn:aws:rds-db:r:1:dbuser:x/app", False),
        ("arn:aws:rds-db:*:1:dbuser:*/app", "arn:aws:rds-db:r:1:dbuser:x/app", True),
        ("arn:aws:rds-db:??-east-1:*", "arn:aws:rds-db:u:-east-1:1", False),
    ],
)
def test_resource_segments(pattern: str, value: str, expected: bool) -> None:
    assert resource_matches(pattern, value, lambda key: None, variables=True) is expected


# -- hostile patterns -------------------------------------------------------------------------
def _bounded(check: Callable[[], object]) -> float:
    start = time.process_time()
    check()
    return time.process_time() - start


HOSTILE_POLICY = """
version: 1
databases:
  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab:
    engine: postgres
    region: us-east-1
    instance: hostile
    users:
      aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab: {auth: iam}
rules:
  - id: eight-stars
    effect: allow
    principals: ["arn:aws:iam::*:role/*a*a*a*a*a*a*a*b"]
    databases: ["*a*a*a*a*a*a*a*a*a*b"]
    db_users: ["*a*a*a*a*a*a*a*a*a*b"]
  - id: ten-stars-and-qmarks
    effect: deny
    principals: ["arn:aws:iam::*:role/*?a*?a*?a*?a*?a*?a*?a*?a*c"]
    databases: ["*a?*a?*a?*a?*a?*b"]
    db_users: ["*a?*a?*a?*a?*a?*b"]
"""


@pytest.mark.timeout(30)
def test_hostile_access_policy_patterns_are_decided_well_under_a_second() -> None:
    index = PolicyIndex(load_policy_text(HOSTILE_POLICY, source="hostile.yaml"))  # the loader accepts them
    name = "a" * 62 + "b"
    short = identity_from_arn(f"arn:aws:iam::111122223333:role/{'a' * 64}")  # the 7 s case
    long_path = "a" * 1800 + "/"
    callers = [short] + [identity_from_arn(f"arn:aws:iam::111122223333:role/{long_path}{'a' * 120}{end}")
                         for end in "abcx"]

    def decide_all() -> list[bool]:
        return [index.decide(c, name, user).allowed for c in callers for user in (name, "a" * 63)]

    results: list[bool] = []
    elapsed = _bounded(lambda: results.extend(decide_all()))
    assert elapsed < BLOW_UP_BOUND
    # ...and the answers are right: only the caller ending in 'b' is allowed, for the user ending in 'b'
    assert results == [False, False, False, False, True, False, False, False, False, False]
    assert index.decide(callers[3], name, name).reason == "denied_by_rule"  # the '?' pattern matched


@pytest.mark.timeout(30)
def test_hostile_iam_patterns_are_evaluated_well_under_a_second() -> None:
    hostile = "*a" * 10 + "*b"
    doc = parse_policy({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "rds-db:" + hostile,
             "Resource": "arn:aws:rds-db:*:*:dbuser:" + hostile},
            {"Effect": "Deny", "Action": "*", "Resource": "arn:aws:rds-db:*:*:dbuser:" + "*a?" * 10 + "*c",
             "Condition": {"StringLike": {"aws:PrincipalTag/team": hostile},
                           "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/" + hostile}}},
        ],
    }, source="hostile.json")
    resource = "arn:aws:rds-db:us-east-1:111122223333:dbuser:db-X/" + "a" * 2000
    context = {"aws:principaltag/team": ("a" * 2000,), "aws:principalarn": ("arn:aws:iam::1:role/" + "a" * 2000,)}

    def run() -> list[str]:
        return [evaluate(RequestContext("rds-db:" + "a" * 300 + end, resource + end, context),
                         identity_policies=[doc]).decision for end in "bc"]

    decisions: list[str] = []
    elapsed = _bounded(lambda: decisions.extend(run()))
    assert elapsed < BLOW_UP_BOUND
    assert decisions == ["allowed", "implicitDeny"]
    assert _bounded(lambda: matches(hostile, "a" * 5000, lambda key: None, variables=True)) < BLOW_UP_BOUND
    assert _bounded(lambda: action_matches(hostile, "a" * 5000)) < BLOW_UP_BOUND


@pytest.mark.timeout(30)
def test_hostile_policy_variable_text_is_read_well_under_a_second() -> None:
    # unclosed "${" runs and a long default-less variable once took quadratic time
    assert _bounded(lambda: tokenize("${" * 20000)) < BLOW_UP_BOUND
    assert _bounded(lambda: tokenize("${a" + " " * 20000 + "x}")) < BLOW_UP_BOUND
    assert tokenize("${aws:username, 'it''s'}") == (("var", "aws:username", "it's"),)
    assert tokenize("${ aws:UserName }x") == (("var", "aws:username", None), "x")
