"""A canary check that could not run because AWS refused the credentials themselves (a bad key,
a bad signature, an expired session) says so, and does not send the operator to add IAM or
Organizations permissions that are not missing."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from chalicelib.aws.errors import credential_code
from chalicelib.canary.checks_iam import check_scp_allows, check_signer_allows
from chalicelib.canary.model import CheckResult, errored
from chalicelib.errors import ProbeError

SIGNATURE = ("sts AssumeRole failed: SignatureDoesNotMatch (The request signature we calculated does not match "
             "the signature you provided. Check your AWS Secret Access Key and signing method.)")
ARN = "arn:aws:rds-db:us-east-1:111122223333:dbuser:db-ABC/orders_app"


@pytest.mark.parametrize("check", [check_signer_allows, check_scp_allows])
def test_a_refused_signature_is_not_a_missing_permission(check: Callable[..., CheckResult]) -> None:
    result = check(ProbeError(SIGNATURE, service="sts", code="SignatureDoesNotMatch"),
                   principal="arn:aws:iam::111122223333:role/signer", dbuser_arn=ARN)
    assert result.status == "error"
    assert "SignatureDoesNotMatch" in result.fix and "credentials" in result.fix
    assert "iam:" not in result.fix and "organizations:" not in result.fix.lower()


def test_a_real_denial_keeps_its_permission_fix() -> None:
    cause = "iam GetRole failed: AccessDenied (User: x is not authorized to perform: iam:GetRole)"
    result = check_signer_allows(ProbeError(cause, service="iam", code="AccessDenied"),
                                 principal="arn:aws:iam::111122223333:role/signer", dbuser_arn=ARN)
    assert "iam:GetRole" in result.fix


@pytest.mark.parametrize("code", ["InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken",
                                  "InvalidSignatureException"])
def test_every_credential_code_is_recognised(code: str) -> None:
    assert credential_code(f"sts GetCallerIdentity failed: {code} (message)") == code
    assert "credentials themselves" in errored("db.connect", f"could not sign: {code}").fix


def test_words_that_merely_contain_a_code_are_not_one() -> None:
    assert credential_code("AccessDenied: not SignatureDoesNotMatchX") is None
