"""``decide_worst``: the slowest decision over hostile patterns, against an ordinary decision.

The hostile policy is one the loader accepts: principal patterns with ten ``*`` (and a ``?``
variant), database and db-user patterns full of stars. The callers are roles with 2 KB ARNs
(a long path) made of the pattern's own letters, matching or missing only at the very end:
the input that makes a backtracking matcher take exponential time. ``value`` is the worst
of the per-question times (each the best of a few timed runs); the baseline is the mean
decision over the ordinary 100-rule policy of ``decide_scaling``. Target: under 1 ms.

Beside those two rules the policy holds :data:`MANY` more hostile principal patterns of ``*``
and ``?``: in other accounts under a wildcard partition, with resource prefixes or suffixes
the callers lack, and wildcards everywhere (partition, account and resource) that each
caller's ARN must really be matched against. Many patterns must not add up to a slow decision.
"""
from __future__ import annotations

import functools
from typing import Any

from bench.bench_vend import bench_env, generated_policy, rate, result

TARGET_US = 1000.0
ACCOUNT = "111122223333"
ARN_LENGTH = 2048
MANY = 3500


def many_hostile_rules(count: int = MANY) -> str:
    """``count`` deny rules, one hostile principal pattern each (see the module docstring)."""
    lines = []
    for i in range(count):
        kind = i % 5
        if kind == 0:  # a fixed account that is not the callers'
            pattern = f"arn:*:iam::{200000000000 + i}:role/*a?*a*a?*b"
        elif kind == 1:  # a resource prefix the callers lack
            pattern = f"arn:a?s:iam::*:role/a{i}*a?*a*b"
        elif kind == 2:  # a resource suffix the callers lack
            pattern = f"arn:*:iam::*:role/*a?*a*a?*b{i}"
        elif kind == 3:  # a fixed partition that is not the callers'
            pattern = f"arn:aws-cn:iam::*:role/*a?*a*a?*{'a?' * (i % 9)}*b"
        else:  # wildcards everywhere: matched against the caller
            pattern = f"arn:*:*::*:*{'a?' * (i % 13)}*{'?a' * (i % 7)}*z"
        lines.append(f"""  - {{id: hostile-{i}, effect: deny, principals: ["{pattern}"], """
                     f"""databases: ["*a*b"], db_users: ["*a*b"]}}""")
    return "\n".join(lines) + "\n"


def hostile_policy_text() -> str:
    stars = "arn:aws:iam::*:role/" + "*a" * 8 + "*b"  # ten '*'
    qmarks = "arn:aws:iam::*:role/" + "*?a" * 8 + "*c"  # ten '*', eight '?'
    return f"""
version: 1
databases:
  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab:
    engine: postgres
    region: us-east-1
    instance: hostile
    users:
      aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab: {{auth: iam}}
rules:
  - id: stars
    effect: allow
    principals: ["{stars}"]
    databases: ["*a*a*a*a*a*a*a*a*a*b"]
    db_users: ["*a*a*a*a*a*a*a*a*a*b"]
  - id: qmarks
    effect: deny
    principals: ["{qmarks}"]
    databases: ["*a?*a?*a?*a?*b"]
    db_users: ["*a?*a?*a?*a?*b"]
""" + many_hostile_rules()


def hostile_callers() -> list[tuple[str, bool]]:
    """(2 KB role ARN, allowed?) pairs."""
    head = f"arn:aws:iam::{ACCOUNT}:role/"

    def arn(last: str) -> str:
        name = "a" * 127 + last
        path = "a" * (ARN_LENGTH - len(head) - len(name) - 1) + "/"
        return head + path + name

    return [(arn("a"), False), (arn("x"), False), (arn("b"), True), (arn("c"), False)]


def _ordinary() -> tuple[Any, list[tuple[Any, str, str]]]:
    from bench.bench_decide import _questions
    from chalicelib.decision import PolicyIndex

    return PolicyIndex(generated_policy(100)), _questions(100)


def run() -> list[dict[str, Any]]:
    bench_env()
    from chalicelib.decision import PolicyIndex
    from chalicelib.identity import identity_from_arn
    from chalicelib.policy.loader import load_policy_text

    index = PolicyIndex(load_policy_text(hostile_policy_text(), source="<hostile>"))
    database = db_user = "a" * 62 + "b"
    questions = []
    for arn, allowed in hostile_callers():
        assert len(arn) == ARN_LENGTH
        identity = identity_from_arn(arn)
        if index.decide(identity, database, db_user).allowed != allowed:
            return [result("decide_worst", 0.0, "us/decision", None, None, f"value < {TARGET_US:.0f}", False,
                           error=f"unexpected decision for a caller ending in {arn[-1]!r}")]
        questions.append((identity, database, db_user))
        questions.append((identity, database, "a" * 63))  # the db-user pattern misses at the end

    worst = 0.0
    for question in questions:
        per_second = rate(functools.partial(index.decide, *question), seconds=0.1, rounds=3)
        worst = max(worst, 1e6 / per_second)

    ordinary, ordinary_questions = _ordinary()

    def four() -> None:
        for q in ordinary_questions:
            ordinary.decide(*q)
    baseline = 1e6 / (rate(four, seconds=0.3, rounds=3) * len(ordinary_questions))
    return [result("decide_worst", worst, "us/decision", baseline, worst / baseline, f"value < {TARGET_US:.0f}",
                   worst < TARGET_US, star_count=10, caller_arn_bytes=ARN_LENGTH, questions=len(questions),
                   hostile_patterns=len(index.policy.rules))]
