"""``decide_scaling``: decision time over a 10,000-rule policy vs the same over 100 rules.

Both policies come from the same generator (:func:`bench.bench_vend.generated_policy`), and
each decision round asks the same four questions: the caller's own allow, a deny on an
owner user, a database the caller has no rule for, and a principal no rule names.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.bench_vend import bench_env, caller_request, generated_policy, rate, request_context, result

TARGET = 2.0


def _questions(rules: int) -> list[tuple[Any, str, str]]:
    from chalicelib.identity import identity_from_arn, identity_from_request_context

    caller = identity_from_request_context(request_context(rules))
    request = caller_request(rules)
    k = request["database"].split("-")[1]
    stranger = identity_from_arn("arn:aws:sts::999999999999:assumed-role/nobody/x")
    return [
        (caller, request["database"], request["db_user"]),
        (caller, request["database"], f"owner_{k}"),
        (caller, "db-0001" if request["database"] != "db-0001" else "db-0002", "app_0001"),
        (stranger, request["database"], request["db_user"]),
    ]


def run() -> list[dict[str, Any]]:
    bench_env()
    from chalicelib.decision import PolicyIndex

    setups = {}
    for rules in (100, 10_000):
        index = PolicyIndex(generated_policy(rules))
        questions = _questions(rules)
        allowed = index.decide(*questions[0])
        if not allowed.allowed or any(index.decide(*q).allowed for q in questions[1:]):
            return [result("decide_scaling", 0.0, "us/decision", None, None, f"ratio <= {TARGET:.0f}", False,
                           error=f"unexpected decisions over {rules} rules")]
        setups[rules] = (index, questions)

    def decider(rules: int) -> Callable[[], None]:
        index, questions = setups[rules]
        decide = index.decide

        def four() -> None:
            for question in questions:
                decide(*question)
        return four

    small, large = [], []
    for _ in range(3):  # interleaved, best of each
        small.append(rate(decider(100), seconds=0.4, rounds=1))
        large.append(rate(decider(10_000), seconds=0.4, rounds=1))
    per_small = 1e6 / (max(small) * 4)  # µs per decision
    per_large = 1e6 / (max(large) * 4)
    ratio = per_large / per_small
    return [result("decide_scaling", per_large, "us/decision", per_small, ratio, f"ratio <= {TARGET:.0f}",
                   ratio <= TARGET, rules=10_000, baseline_rules=100)]
