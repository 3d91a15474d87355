"""The documentation corpus: every case in tests/unit/iam_corpus/*.yaml, each citing the AWS
documentation rule it checks, evaluated by chalicelib.iam.evaluate (and again through
evaluate_scps for the SCP side where SCPs are given)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chalicelib.iam.evaluator import Evaluation, evaluate, evaluate_scps
from chalicelib.iam.model import PolicyDocument, RequestContext, parse_policy

CORPUS = Path(__file__).parent / "iam_corpus"


def _load_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text()):
            case["_file"] = path.name
            cases.append(case)
    return cases


CASES = _load_cases()


def _policy(raw: Any, source: str) -> PolicyDocument:
    if isinstance(raw, list):
        raw = {"Version": "2012-10-17", "Statement": raw}
    return parse_policy(raw, source)


def _run(case: dict[str, Any],
         ) -> tuple[RequestContext, list[list[PolicyDocument]] | None, Evaluation]:
    identity = [_policy(p, f"identity{i}") for i, p in enumerate(case.get("identity") or [])]
    boundary = _policy(case["boundary"], "boundary") if "boundary" in case else None
    session = _policy(case["session"], "session") if "session" in case else None
    scps = None
    if "scp" in case:
        scps = [[_policy(p, f"scp{i}.{j}") for j, p in enumerate(level)] for i, level in enumerate(case["scp"])]
    req = case["request"]
    context = {k: (v if isinstance(v, list) else [v]) for k, v in (req.get("context") or {}).items()}
    request = RequestContext(req["action"], req["resource"], {k: tuple(map(str, v)) for k, v in context.items()})
    return request, scps, evaluate(request, identity_policies=identity, boundary=boundary, scp_levels=scps,
                                   session_policy=session, management_account=bool(case.get("management_account")))


def test_corpus_is_large_cited_and_unique() -> None:
    assert len(CASES) >= 60
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for case in CASES:
        assert case.get("cite") and case.get("url", "").startswith("https://docs.aws.amazon.com/"), case["id"]
        assert case["expect"]["decision"] in ("allowed", "explicitDeny", "implicitDeny")
    decisions = {c["expect"]["decision"] for c in CASES}
    assert decisions == {"allowed", "explicitDeny", "implicitDeny"}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case(case: dict[str, Any]) -> None:
    request, scps, result = _run(case)
    expect = case["expect"]
    where = f"{case['_file']}:{case['id']} ({case['cite']})"
    assert result.decision == expect["decision"], f"{where}: {result.explanation}"
    for field in ("layer", "policy", "statement"):
        if field in expect:
            assert getattr(result, field) == expect[field], f"{where}: {field} {result}"
    assert result.explanation  # always a sentence
    if scps is not None and expect["decision"] != "allowed" and expect.get("layer") == "scp":
        side = evaluate_scps(request, scps, management_account=bool(case.get("management_account")))
        assert side.decision == expect["decision"], where
