"""The identity proof without any network: what build makes and what parse accepts."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from chalicelib.errors import IdentityProofError, InvalidRequestError, UpstreamUnavailableError
from chalicelib.vending.proof import (
    SERVER_ID_HEADER,
    ProofConfig,
    StsAnswer,
    parse_identity_proof,
    parse_sts_answer,
    proof_config_from_env,
)
from rdsvend.proof import build_identity_proof

ENDPOINT = "https://sts.us-east-1.amazonaws.com"
CONFIG = ProofConfig(sts_endpoint=ENDPOINT, server_id="srv-1")
SESSION = boto3.Session(aws_access_key_id="AKIDPROOFTEST0000001", aws_secret_access_key="secret",
                        aws_session_token="session-token-value", region_name="us-east-1")


def _signed_at(proof: dict[str, Any]) -> datetime:
    return datetime.strptime(proof["headers"]["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@pytest.fixture
def proof() -> dict[str, Any]:
    return build_identity_proof("srv-1", session=SESSION, endpoint_url=ENDPOINT)


def test_built_proof_signs_the_server_id_and_targets_sts(proof: dict[str, Any]) -> None:
    assert proof["url"] == ENDPOINT + "/" and proof["method"] == "POST"
    assert proof["body"] == "Action=GetCallerIdentity&Version=2011-06-15"
    signed = proof["headers"]["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "x-rdsvend-server-id", "x-amz-security-token"} <= set(signed)
    assert "/us-east-1/sts/aws4_request" in proof["headers"]["Authorization"]


def test_parse_forwards_only_signed_headers_to_the_configured_endpoint(proof: dict[str, Any]) -> None:
    proof["headers"]["X-Unsigned-Extra"] = "dropped"
    request = parse_identity_proof(proof, CONFIG, _signed_at(proof))
    names = [name for name, _ in request.headers]
    assert request.url == ENDPOINT + "/"
    assert "x-unsigned-extra" not in names and "authorization" in names
    assert request.access_key_id == "AKIDPROOFTEST0000001"
    assert "session-token-value" not in repr(request)


@pytest.mark.parametrize("age, ok", [(timedelta(minutes=4, seconds=59), True),
                                     (timedelta(minutes=5, seconds=1), False),
                                     (timedelta(minutes=-6), False)])
def test_age_limit(proof: dict[str, Any], age: timedelta, ok: bool) -> None:
    now = _signed_at(proof) + age
    if ok:
        parse_identity_proof(proof, CONFIG, now)
    else:
        with pytest.raises(IdentityProofError):
            parse_identity_proof(proof, CONFIG, now)


def test_default_port_spelled_out_is_the_same_endpoint(proof: dict[str, Any]) -> None:
    proof["url"] = "https://STS.us-east-1.amazonaws.com:443/"
    parse_identity_proof(proof, CONFIG, _signed_at(proof))


def test_errors_never_quote_header_values(proof: dict[str, Any]) -> None:
    proof["headers"][SERVER_ID_HEADER] = "guess-" + "x" * 20
    with pytest.raises(IdentityProofError) as raised:
        parse_identity_proof(proof, CONFIG, _signed_at(proof))
    assert "guess" not in str(raised.value) and "srv-1" not in str(raised.value)
    proof = build_identity_proof("srv-1", session=SESSION, endpoint_url=ENDPOINT)
    proof["headers"]["Authorization"] = proof["headers"]["Authorization"].replace("AWS4-HMAC-SHA256", "AWS4-X")
    with pytest.raises(IdentityProofError) as raised:
        parse_identity_proof(proof, CONFIG, _signed_at(proof))
    assert "Signature=" not in str(raised.value)


def test_credential_scope_must_be_sts(proof: dict[str, Any]) -> None:
    proof["headers"]["Authorization"] = proof["headers"]["Authorization"].replace("/sts/", "/execute-api/")
    with pytest.raises(IdentityProofError, match="sts"):
        parse_identity_proof(proof, CONFIG, _signed_at(proof))


def test_content_length_must_match_the_body(proof: dict[str, Any]) -> None:
    proof["headers"]["Content-Length"] = "9999"
    with pytest.raises(IdentityProofError, match="Content-Length"):
        parse_identity_proof(proof, CONFIG, _signed_at(proof))


def test_wrong_types_are_invalid_requests(proof: dict[str, Any]) -> None:
    proof["headers"] = [["Authorization", "x"]]
    with pytest.raises(InvalidRequestError, match="identity.headers"):
        parse_identity_proof(proof, CONFIG, datetime.now(UTC))


ANSWER = (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
          b"<GetCallerIdentityResult><Arn>arn:aws:sts::111122223333:assumed-role/fn/s</Arn>"
          b"<UserId>AROA:s</UserId><Account>111122223333</Account></GetCallerIdentityResult>"
          b"<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>")


def test_sts_answer_names_the_caller() -> None:
    caller = parse_sts_answer(StsAnswer(200, ANSWER), "ASIA1")
    assert (caller.arn, caller.account, caller.access_key_id) == (
        "arn:aws:sts::111122223333:assumed-role/fn/s", "111122223333", "ASIA1")


@pytest.mark.parametrize("answer, error", [
    (StsAnswer(403, b"<ErrorResponse><Error><Code>InvalidClientTokenId</Code></Error></ErrorResponse>"),
     IdentityProofError),
    (StsAnswer(400, b"<ErrorResponse><Error><Code>ExpiredToken</Code></Error></ErrorResponse>"), IdentityProofError),
    (StsAnswer(400, b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>"),
     UpstreamUnavailableError),
    (StsAnswer(500, b"oops"), UpstreamUnavailableError),
    (StsAnswer(302, b""), UpstreamUnavailableError),
    (StsAnswer(200, b"<html>captive portal</html>"), UpstreamUnavailableError),
    (StsAnswer(200, b"not xml at all"), UpstreamUnavailableError),
])
def test_sts_failures_map_to_rejection_or_unavailability(answer: StsAnswer, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_sts_answer(answer)


def test_config_from_env_defaults_to_the_regional_endpoint_and_requires_a_server_id() -> None:
    config = proof_config_from_env({"RDSVEND_SERVER_ID": "srv", "AWS_REGION": "eu-central-1"})
    assert config.sts_endpoint == "https://sts.eu-central-1.amazonaws.com"
    with pytest.raises(ValueError, match="RDSVEND_SERVER_ID"):
        proof_config_from_env({"AWS_REGION": "eu-central-1"})
