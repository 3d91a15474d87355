"""From a request to what IAM authorizes (devtools.local.actions): every protocol's operation
read with botocore's model, and the action and resource ARNs AWS would ask for."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from devtools.local.actions import RequestFacts, UnmappedError, asks_for, parse_operation

ACCOUNT = "222222222222"
USER = f"arn:aws:iam::{ACCOUNT}:user/u"


class Names:
    def secret_arn(self, account: str, region: str, secret_id: str) -> str | None:
        return f"arn:aws:secretsmanager:{region}:{account}:secret:{secret_id}-AbCdEf" if secret_id == "known" else None

    def role_arn(self, account: str, role_name: str) -> str | None:
        return f"arn:aws:iam::{account}:role/team/{role_name}" if role_name == "pathed" else None

    def user_arn(self, account: str, user_name: str) -> str | None:
        return None

    def organization(self, account: str) -> tuple[str, str] | None:
        return ("o-abc", "111111111111")


FACTS = RequestFacts(ACCOUNT, "us-east-1", USER, Names())


def _json(target: str, body: Any) -> tuple[dict[str, str], bytes]:
    return {"x-amz-target": target}, json.dumps(body).encode()


def _pairs(signing: str, method: str = "POST", path: str = "/", query: str = "",
           headers: Mapping[str, str] | None = None, body: bytes = b"") -> tuple[tuple[str, str], ...] | None:
    op = parse_operation(signing, method, path, query, headers or {}, body)
    assert op is not None
    ask = asks_for(op, FACTS)
    return None if ask is None else ask.pairs


@pytest.mark.parametrize(("signing", "body", "expected"), [
    ("iam", b"Action=GetRole&RoleName=pathed&Version=2010-05-08",
     [("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/team/pathed")]),
    ("iam", b"Action=GetUser&Version=2010-05-08", [("iam:GetUser", USER)]),  # no name: the caller's own user
    ("iam", b"Action=ListRoles&Version=2010-05-08", [("iam:ListRoles", "*")]),
    ("rds", b"Action=DescribeDBInstances&DBInstanceIdentifier=orders&Version=2014-10-31",
     [("rds:DescribeDBInstances", f"arn:aws:rds:us-east-1:{ACCOUNT}:db:orders")]),
    ("rds", b"Action=DescribeDBInstances&Version=2014-10-31", [("rds:DescribeDBInstances", "*")]),
    ("sts", b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A444444444444%3Arole%2Fr&RoleSessionName=s"
            b"&SourceIdentity=me&Version=2011-06-15",
     [("sts:AssumeRole", "arn:aws:iam::444444444444:role/r"),
      ("sts:SetSourceIdentity", "arn:aws:iam::444444444444:role/r")]),
    ("sns", b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A222222222222%3At&Message=m",
     [("sns:Publish", "arn:aws:sns:us-east-1:222222222222:t")]),
])
def test_query_requests(signing: str, body: bytes, expected: list[tuple[str, str]]) -> None:
    assert _pairs(signing, body=body) == tuple(expected)


@pytest.mark.parametrize(("signing", "target", "body", "expected"), [
    ("secretsmanager", "secretsmanager.GetSecretValue", {"SecretId": "known"},
     [("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:known-AbCdEf")]),
    ("secretsmanager", "secretsmanager.GetSecretValue", {"SecretId": "rdsvend/new"},
     [("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:rdsvend/new")]),
    ("ssm", "AmazonSSM.GetParameter", {"Name": "/rdsvend/policy"},
     [("ssm:GetParameter", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/rdsvend/policy")]),
    ("dynamodb", "DynamoDB_20120810.PutItem", {"TableName": "state", "Item": {}},
     [("dynamodb:PutItem", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/state")]),
    ("dynamodb", "DynamoDB_20120810.BatchGetItem", {"RequestItems": {"a": {"Keys": []}, "b": {"Keys": []}}},
     [("dynamodb:BatchGetItem", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/a"),
      ("dynamodb:BatchGetItem", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/b")]),
    ("logs", "Logs_20140328.PutLogEvents", {"logGroupName": "g", "logStreamName": "s", "logEvents": []},
     [("logs:PutLogEvents", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:g:log-stream:s")]),
    ("logs", "Logs_20140328.FilterLogEvents", {"logGroupName": "g"},
     [("logs:FilterLogEvents", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:g:*")]),
    ("organizations", "AWSOrganizationsV20161128.DescribePolicy", {"PolicyId": "p-12345678"},
     [("organizations:DescribePolicy", "arn:aws:organizations::111111111111:policy/o-abc/service_control_policy/p-12345678")]),
    ("organizations", "AWSOrganizationsV20161128.ListParents", {"ChildId": ACCOUNT},
     [("organizations:ListParents", f"arn:aws:organizations::111111111111:account/o-abc/{ACCOUNT}")]),
    ("organizations", "AWSOrganizationsV20161128.DescribeOrganization", {},
     [("organizations:DescribeOrganization", "*")]),
])
def test_json_requests(signing: str, target: str, body: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    headers, raw = _json(target, body)
    assert _pairs(signing, headers=headers, body=raw) == tuple(expected)


def test_rest_routes_of_lambda_are_read_from_the_model() -> None:
    fn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:rdsvend-local-vend"
    assert _pairs("lambda", "GET", "/2015-03-31/functions/rdsvend-local-vend") == (("lambda:GetFunction", fn),)
    assert _pairs("lambda", "POST", "/2015-03-31/functions/rdsvend-local-vend/invocations", body=b"{}") == (
        ("lambda:InvokeFunction", fn),)
    assert _pairs("lambda", "GET", "/2015-03-31/functions/rdsvend-local-vend/policy") == (("lambda:GetPolicy", fn),)


def test_cbor_rpc_operations_are_read_from_the_path() -> None:
    assert _pairs("monitoring", path="/service/GraniteServiceVersion20100801/operation/PutMetricData") == (
        ("cloudwatch:PutMetricData", "*"),)


def test_get_caller_identity_needs_no_permission() -> None:
    assert _pairs("sts", body=b"Action=GetCallerIdentity&Version=2011-06-15") is None


def test_an_operation_the_model_does_not_have_is_not_read() -> None:
    assert parse_operation("iam", "POST", "/", "", {}, b"Action=MakeMeAdmin") is None
    assert parse_operation("secretsmanager", "POST", "/", "", {"x-amz-target": "secretsmanager.Nope"}, b"{}") is None
    assert parse_operation("unknown-service", "POST", "/", "", {}, b"Action=X") is None


def test_a_required_resource_the_stack_cannot_name_is_unmapped() -> None:
    op = parse_operation("iam", "POST", "/", "", {}, b"Action=GetSAMLProvider&SAMLProviderArn=arn%3Ax")
    assert op is not None
    with pytest.raises(UnmappedError) as caught:
        asks_for(op, FACTS)
    assert caught.value.action == "iam:GetSAMLProvider" and "saml-provider" in caught.value.why
    missing = parse_operation("secretsmanager", "POST", "/", "", *_json("secretsmanager.GetSecretValue", {}))
    assert missing is not None
    with pytest.raises(UnmappedError):
        asks_for(missing, FACTS)
