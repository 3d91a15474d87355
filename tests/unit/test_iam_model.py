"""Parsing IAM policy documents: what loads, and the precise error for what does not."""
from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.errors import IamPolicyError
from chalicelib.iam.model import RequestContext, parse_policy, split_operator


def _doc(**stmt: Any) -> dict[str, Any]:
    base = {"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}
    base.update(stmt)
    return {"Version": "2012-10-17", "Statement": [{k: v for k, v in base.items() if v is not None}]}


def test_statement_as_object_or_list_parse_the_same() -> None:
    single = parse_policy({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}, "a")
    listed = parse_policy({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}, "a")
    assert single.statements == listed.statements


def test_condition_values_normalised_to_strings() -> None:
    doc = parse_policy(_doc(Condition={"Bool": {"aws:SecureTransport": True}, "NumericLessThan": {"s3:max-keys": 10}}), "p")
    values = {c.key: c.values for c in doc.statements[0].conditions}
    assert values == {"aws:SecureTransport": ("true",), "s3:max-keys": ("10",)}


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"Version": "2012-10-17"}), "missing 'Statement'"),
        (json.dumps(_doc(Effect="Permit")), "'Effect' must be \"Allow\" or \"Deny\""),
        (json.dumps(_doc(Effect="allow")), "'Effect' must be"),
        (json.dumps(_doc(NotAction="s3:*")), "both 'Action' and 'NotAction'"),
        (json.dumps(_doc(Action=None)), "missing 'Action' or 'NotAction'"),
        (json.dumps(_doc(NotResource="*")), "both 'Resource' and 'NotResource'"),
        (json.dumps(_doc(Condition={"StringEqualz": {"aws:username": "bob"}})), "unknown condition operator 'StringEqualz'"),
        (json.dumps(_doc(Condition={"NullIfExists": {"aws:username": "true"}})), "unknown condition operator"),
        (json.dumps(_doc(Condition={"ForSomeValues:StringLike": {"aws:TagKeys": "a"}})), "unknown condition operator"),
        (json.dumps(_doc(Action=5)), "'Action' must be a string or a list of strings"),
        (json.dumps(_doc(Condition={"StringEquals": {"aws:username": {"a": 1}}})), "values must be strings"),
        (json.dumps(_doc(Principal="*")), "'Principal' is not allowed"),
        (json.dumps(_doc(Actions="s3:*")), "unknown element 'Actions'"),
        (json.dumps({"Version": "2012-10-17", "Statement": []}), "non-empty list"),
        (json.dumps([1, 2]), "must be a JSON object"),
        (json.dumps({"Version": "2020-01-01", "Statement": _doc()["Statement"]}), "unsupported 'Version'"),
    ],
)
def test_malformed_policies_name_the_source_and_problem(doc: str, fragment: str) -> None:
    with pytest.raises(IamPolicyError) as info:
        parse_policy(doc, "policies/signer.json")
    assert str(info.value).startswith("policies/signer.json: ")
    assert fragment in str(info.value)
    assert info.value.source == "policies/signer.json"


def test_split_operator() -> None:
    assert split_operator("ForAnyValue:StringLikeIfExists") == ("ForAnyValue", "StringLike", True)
    assert split_operator("Null") == (None, "Null", False)


def test_request_context_keys_case_insensitive_and_empty_is_absent() -> None:
    ctx = RequestContext("s3:GetObject", "arn:aws:s3:::b/k", {"AWS:UserName": ("bob",), "aws:TagKeys": ()})
    assert ctx.get("aws:username") == ("bob",)
    assert ctx.get("aws:tagkeys") is None
    assert ctx.get("aws:missing") is None
