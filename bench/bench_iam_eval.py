"""``iam_eval``: 1,000 distinct dbuser ARNs evaluated against 50 identity policies (plus a
boundary and two SCP levels), the way the canary checks ``rds-db:connect``.

Reports the total for the 1,000 evaluations against the 1 s budget (``ratio`` = total / budget,
``ok`` when under), the time per evaluation, and a scaling line: 50 policies against 5, both
measured in this run.
"""
from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.model import PolicyDocument, RequestContext, parse_policy
from chalicelib.iam.rdsdb import dbuser_arn

BUDGET_SECONDS = 1.0
N_ARNS = 1000
N_POLICIES = 50
ACCOUNT = "111122223333"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")


def _rid(rng: random.Random, prefix: str = "db-") -> str:
    return prefix + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(26))


def _policies(rng: random.Random, count: int, rids: list[str]) -> tuple[list[PolicyDocument], list[str], list[str]]:
    """``count`` signer-like policies, and the exact dbuser ARNs and svc_ prefixes they allow."""
    docs: list[PolicyDocument] = []
    declared: list[str] = []
    wildcard_rids: list[str] = []
    for i in range(count):
        exact: list[str] = []
        while len(exact) < 8:
            arn = dbuser_arn(rng.choice(REGIONS), ACCOUNT, rng.choice(rids), f"app_{rng.randrange(40)}")
            if arn not in declared and arn not in exact:
                exact.append(arn)
        declared.extend(exact)
        wildcard_rids.append(rng.choice(rids))
        statements = [
            {
                "Sid": f"Connect{i}",
                "Effect": "Allow",
                "Action": "rds-db:connect",
                "Resource": exact + [f"arn:aws:rds-db:*:{ACCOUNT}:dbuser:{wildcard_rids[-1]}/svc_*"],
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123def4"}},
            },
            {"Effect": "Allow", "Action": ["s3:GetObject", "kms:Decrypt"], "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "rds-db:connect",
                "Resource": f"arn:aws:rds-db:*:*:dbuser:*/admin_{i}",
                "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}},
            },
        ]
        docs.append(parse_policy({"Version": "2012-10-17", "Statement": statements}, f"policy-{i}"))
    return docs, declared, wildcard_rids


def _requests(rng: random.Random, rids: list[str], declared: list[str], wildcard_rids: list[str]) -> list[RequestContext]:
    """1,000 distinct ARNs: every declared one, 100 under a svc_* pattern, the rest undeclared."""
    context = {"aws:PrincipalOrgID": ("o-abc123def4",), "aws:SourceIp": ("10.1.2.3",),
               "aws:PrincipalArn": (f"arn:aws:iam::{ACCOUNT}:role/rdsvend-signer",)}
    arns = list(declared)
    arns += [dbuser_arn(rng.choice(REGIONS), ACCOUNT, rng.choice(wildcard_rids), f"svc_{n}") for n in range(100)]
    n = 0
    while len(arns) < N_ARNS:
        arns.append(dbuser_arn(rng.choice(REGIONS), ACCOUNT, rng.choice(rids), f"stranger_{n}"))
        n += 1
    assert len(set(arns)) == N_ARNS
    rng.shuffle(arns)
    return [RequestContext("rds-db:connect", arn, context) for arn in arns]


def _time(requests: list[RequestContext], identity: Sequence[PolicyDocument], boundary: PolicyDocument,
          scps: Sequence[Sequence[PolicyDocument]]) -> tuple[float, int]:
    allowed = 0
    start = time.perf_counter()
    for request in requests:
        if evaluate(request, identity_policies=identity, boundary=boundary, scp_levels=scps).allowed:
            allowed += 1
    return time.perf_counter() - start, allowed


def run() -> list[dict[str, Any]]:
    rng = random.Random(20240601)
    rids = [_rid(rng) for _ in range(200)] + [_rid(rng, "cluster-") for _ in range(50)]
    policies, declared, wildcard_rids = _policies(rng, N_POLICIES, rids)
    boundary = parse_policy({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "rds-db:*", "Resource": "*"}]}, "boundary")
    full = parse_policy({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}, "FullAWSAccess")
    region_guard = parse_policy({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "NotAction": ["iam:*", "sts:*"], "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:RequestedRegion": list(REGIONS)}, "Null": {"aws:RequestedRegion": "false"}},
    }]}, "region-guard")
    scps = [[full], [full, region_guard]]
    requests = _requests(rng, rids, declared, wildcard_rids)

    total, allowed = _time(requests, policies, boundary, scps)  # cold: regexes compiled on the way
    warm, _ = _time(requests, policies, boundary, scps)
    small, _ = _time(requests, policies[:5], boundary, scps)
    expected = len(declared) + 100
    return [
        {
            "name": "iam_eval",
            "value": round(total, 4),
            "unit": "s",
            "baseline": BUDGET_SECONDS,
            "ratio": round(total / BUDGET_SECONDS, 3),
            "ok": total < BUDGET_SECONDS and allowed == expected,
            "per_eval_us": round(total / N_ARNS * 1e6, 1),
            "warm_per_eval_us": round(warm / N_ARNS * 1e6, 1),
            "evaluations": N_ARNS,
            "policies": N_POLICIES,
            "allowed": allowed,
            "expected_allowed": expected,
            "note": "1,000 distinct dbuser ARNs x 50 identity policies + boundary + 2 SCP levels; baseline is the 1 s budget",
        },
        {
            "name": "iam_eval_scaling",
            "value": round(warm / N_ARNS * 1e6, 1),
            "unit": "us/eval",
            "baseline": round(small / N_ARNS * 1e6, 1),
            "ratio": round(warm / small, 2) if small else None,
            "note": "50 identity policies against 5, same requests, same run",
        },
    ]


if __name__ == "__main__":  # pragma: no cover
    import json

    for line in run():
        print(json.dumps(line))
