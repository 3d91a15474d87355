"""One reading of a failed AWS call: throttled, not found, denied, failed, or no answer.

Every adapter that calls AWS hands what it caught to :func:`aws_error` and decides on the
answer's ``kind``; the lists of error codes live here and nowhere else. botocore is not
imported: its exceptions are recognised by the module that defines them, and a
``ClientError``'s code and message are read from its documented ``response`` mapping. So the
core (the signer's role assumer, for one) can classify without depending on botocore.

    try:
        answer = client.describe_db_instances(DBInstanceIdentifier=name)
    except Exception as exc:
        error = aws_error(exc)
        if error is None:
            raise  # not an AWS failure: a bug, let it surface
        if error.kind == "not_found":
            ...
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AwsError",
    "AwsErrorKind",
    "CREDENTIAL_CODES",
    "DENIED_CODES",
    "NOT_FOUND_CODES",
    "SERVER_FAULT_CODES",
    "THROTTLING_CODES",
    "aws_error",
    "credential_code",
    "error_code",
    "is_aws_error",
]

AwsErrorKind = Literal["throttled", "not_found", "denied", "failed", "no_answer"]

#: Codes AWS services answer when a caller is over a rate (botocore's retry handler list, and
#: the older spellings of STS, EC2, S3 and DynamoDB).
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "SlowDown", "PriorRequestNotComplete",
    "ProvisionedThroughputExceededException", "BandwidthLimitExceeded", "EC2ThrottledException",
    "LimitExceededException", "RequestThrottled", "TransactionInProgressException",
})

#: Codes of a service's own failure (worth a retry later, as throttling is).
SERVER_FAULT_CODES = frozenset({"ServiceUnavailable", "InternalFailure", "InternalError", "InternalServerError"})

#: Codes that mean "there is no such thing" rather than "the call failed".
NOT_FOUND_CODES = frozenset({
    "DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault", "DBClusterNotFound",
    "DBProxyNotFoundFault", "DBProxyNotFound", "NoSuchEntity", "NoSuchEntityException",
    "ResourceNotFoundException", "ParameterNotFound",
})

#: Codes that mean the credentials used may not make this call (or are not valid at all).
DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
    "AuthorizationErrorException", "UnrecognizedClientException", "InvalidClientTokenId",
    "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch", "InvalidSignatureException",
    "AuthFailure", "MissingAuthenticationToken", "OptInRequired",
})

#: The denied codes that say the request's signature or credentials were refused: nothing is
#: wrong with IAM or Organizations permissions, the caller's keys (or session) are.
CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
    "SignatureDoesNotMatch", "InvalidSignatureException", "IncompleteSignature", "IncompleteSignatureException",
    "AuthFailure", "MissingAuthenticationToken",
})
_WORD = re.compile(r"[A-Za-z]+")

_SDK_MODULES = ("botocore.", "boto3.")


@dataclass(frozen=True)
class AwsError:
    """What an AWS failure means to rdsvend.

    ``code`` is the service's error code (``ClientError``) or the SDK exception's class name
    (``EndpointConnectionError``, ``NoCredentialsError``...); ``message`` is the service's own
    message, at most 300 characters: fit for logs and operator output, never for a caller.
    Neither carries request parameters or credentials.
    """

    kind: AwsErrorKind
    code: str
    message: str = ""

    @property
    def throttled(self) -> bool:
        return self.kind == "throttled"

    @property
    def not_found(self) -> bool:
        return self.kind == "not_found"

    @property
    def denied(self) -> bool:
        return self.kind == "denied"

    def __str__(self) -> str:
        return f"{self.code} ({self.message})" if self.message else self.code


def is_aws_error(exc: BaseException) -> bool:
    """True for an exception raised by botocore or boto3 (``ClientError``, ``BotoCoreError``...)."""
    return any(cls.__module__.startswith(_SDK_MODULES) for cls in type(exc).__mro__)


def credential_code(text: str) -> str | None:
    """The first of :data:`CREDENTIAL_CODES` named in ``text`` (an error's code or a cause that
    quotes it), else ``None``."""
    return next((word for word in _WORD.findall(text) if word in CREDENTIAL_CODES), None)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError``; otherwise the exception's class name."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, Mapping) else None
    code = error.get("Code") if isinstance(error, Mapping) else None
    return str(code) if code else type(exc).__name__


def aws_error(exc: BaseException) -> AwsError | None:
    """Classify ``exc``; ``None`` when it did not come from the AWS SDK."""
    if not is_aws_error(exc):
        return None
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, Mapping) else None
    if not isinstance(error, Mapping):
        # BotoCoreError: no answer from the service (connection, timeout, credentials, parameters).
        return AwsError("no_answer", type(exc).__name__)
    code = str(error.get("Code") or "ClientError")
    message = str(error.get("Message") or "")[:300]
    kind: AwsErrorKind = "failed"
    if code in THROTTLING_CODES:
        kind = "throttled"
    elif code in NOT_FOUND_CODES:
        kind = "not_found"
    elif code in DENIED_CODES:
        kind = "denied"
    return AwsError(kind, code, message)
