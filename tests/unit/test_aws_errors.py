"""The one AWS error classification, on real botocore exceptions."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError

from chalicelib.aws.errors import AwsError, AwsErrorKind, aws_error, error_code, is_aws_error


def _client_error(code: str, message: str = "m") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeDBInstances")


@pytest.mark.parametrize(("code", "kind"), [
    ("Throttling", "throttled"),
    ("ThrottlingException", "throttled"),
    ("RequestLimitExceeded", "throttled"),
    ("TooManyRequestsException", "throttled"),
    ("DBInstanceNotFound", "not_found"),
    ("DBProxyNotFoundFault", "not_found"),
    ("NoSuchEntity", "not_found"),
    ("ResourceNotFoundException", "not_found"),
    ("AccessDenied", "denied"),
    ("AccessDeniedException", "denied"),
    ("ExpiredToken", "denied"),
    ("InvalidParameterValue", "failed"),
])
def test_client_errors_by_code(code: str, kind: AwsErrorKind) -> None:
    assert aws_error(_client_error(code)) == AwsError(kind, code, "m")


def test_sdk_errors_without_an_answer() -> None:
    for exc in (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), NoCredentialsError(),
                ConnectTimeoutError(endpoint_url="http://x")):
        error = aws_error(exc)
        assert error is not None and error.kind == "no_answer" and error.code == type(exc).__name__


def test_modelled_exception_classes_are_client_errors() -> None:
    """boto3's ``client.exceptions.X`` classes are made at run time (botocore.errorfactory)."""
    import boto3

    iam = boto3.session.Session(region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b").client("iam")
    exc = iam.exceptions.NoSuchEntityException({"Error": {"Code": "NoSuchEntity", "Message": "no"}}, "GetRole")
    assert aws_error(exc) == AwsError("not_found", "NoSuchEntity", "no")


def test_other_exceptions_are_not_aws_errors() -> None:
    for exc in (KeyError("Credentials"), TypeError("x"), ValueError("y")):
        assert not is_aws_error(exc)
        assert aws_error(exc) is None


def test_message_is_bounded_and_code_falls_back_to_the_class() -> None:
    error = aws_error(_client_error("Boom", "x" * 1000))
    assert error is not None and len(error.message) == 300
    assert error_code(KeyError("k")) == "KeyError"
    assert error_code(_client_error("Throttling")) == "Throttling"
    assert str(AwsError("denied", "AccessDenied")) == "AccessDenied"
