"""The local AWS's refusals (devtools.local.aws_denials) read by botocore's own response parsers
as each service's error: the code and AWS's message come through to the caller."""
from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser

from devtools.local.aws_denials import Answer, access_denied, auth_failure, denied_message

USER = "arn:aws:iam::333333333333:user/reporting-job"


def _parsed(service: str, answer: Answer, operation: str) -> Any:
    model = botocore.session.get_session().get_service_model(service)
    headers = {k.lower(): v for k, v in answer.headers}  # botocore reads them case-insensitively
    response = {"status_code": answer.status, "headers": headers, "body": answer.body}
    parser = create_parser(model.protocol)
    shape = model.operation_model(operation).output_shape  # None for operations that answer nothing
    return parser.parse(response, shape)["Error"]  # type: ignore[arg-type]  # botocore takes no shape; stubs want one


MESSAGE = denied_message(USER, "x:Y", "*", "identity", False)


@pytest.mark.parametrize(("signing", "service", "operation", "code"), [
    ("iam", "iam", "GetUser", "AccessDenied"),
    ("sts", "sts", "AssumeRole", "AccessDenied"),
    ("rds", "rds", "DescribeDBInstances", "AccessDenied"),
    ("sns", "sns", "Publish", "AuthorizationError"),
    ("secretsmanager", "secretsmanager", "GetSecretValue", "AccessDeniedException"),
    ("ssm", "ssm", "GetParameter", "AccessDeniedException"),
    ("dynamodb", "dynamodb", "PutItem", "AccessDeniedException"),
    ("logs", "logs", "PutLogEvents", "AccessDeniedException"),
    ("organizations", "organizations", "ListParents", "AccessDeniedException"),
    ("lambda", "lambda", "GetFunction", "AccessDeniedException"),
    ("monitoring", "cloudwatch", "PutMetricData", "AccessDenied"),
    ("ds", "ds", "DescribeDirectories", "AccessDeniedException"),
])
def test_each_protocol_answers_access_denied_as_its_service_does(signing: str, service: str, operation: str,
                                                                 code: str) -> None:
    error = _parsed(service, access_denied(signing, MESSAGE), operation)
    assert error["Code"] == code
    assert error["Message"] == MESSAGE


def test_ec2_says_unauthorized_operation() -> None:
    error = _parsed("ec2", access_denied("ec2", MESSAGE), "CreateVpc")
    assert error["Code"] == "UnauthorizedOperation"
    assert error["Message"] == f"You are not authorized to perform this operation. {MESSAGE}"


@pytest.mark.parametrize(("layer", "explicit", "tail"), [
    ("identity", False, "because no identity-based policy allows the s:A action"),
    ("scp", False, "because no service control policy allows the s:A action"),
    ("boundary", False, "because no permissions boundary allows the s:A action"),
    ("session", False, "because no session policy allows the s:A action"),
    ("resource", False, "because no resource-based policy allows the s:A action"),
    ("identity", True, "with an explicit deny in an identity-based policy"),
    ("scp", True, "with an explicit deny in a service control policy"),
    ("resource", True, "with an explicit deny in a resource-based policy"),
])
def test_the_message_names_the_layer_in_aws_words(layer: str, explicit: bool, tail: str) -> None:
    assert denied_message(USER, "s:A", "arn:r", layer, explicit) == (
        f"User: {USER} is not authorized to perform: s:A on resource: arn:r {tail}")


def test_a_trust_refusal_is_worded_as_sts_words_it() -> None:
    assert denied_message(USER, "sts:AssumeRole", "arn:aws:iam::1:role/r", "trust", False) == (
        f"User: {USER} is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::1:role/r")


@pytest.mark.parametrize(("signing", "service", "operation", "reason", "code"), [
    ("iam", "iam", "GetUser", "unknown_key", "InvalidClientTokenId"),
    ("iam", "iam", "GetUser", "bad_signature", "SignatureDoesNotMatch"),
    ("secretsmanager", "secretsmanager", "GetSecretValue", "unknown_key", "UnrecognizedClientException"),
    ("secretsmanager", "secretsmanager", "GetSecretValue", "bad_signature", "InvalidSignatureException"),
    ("lambda", "lambda", "GetFunction", "unknown_key", "UnrecognizedClientException"),
    ("ec2", "ec2", "CreateVpc", "bad_signature", "AuthFailure"),
])
def test_signature_failures_answer_the_services_codes(signing: str, service: str, operation: str, reason: str,
                                                      code: str) -> None:
    assert _parsed(service, auth_failure(signing, reason), operation)["Code"] == code
