"""Direct-invoke callers must sign their identity proof for the regional STS endpoint the
function uses (docs/deploy.md): a proof made for the global endpoint is refused before any
request leaves the function. Pure checks, no network: the proof is signed locally by the
client's builder with static keys."""
from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from chalicelib.errors import IdentityProofError
from chalicelib.vending.proof import ProofConfig, parse_identity_proof, proof_config_from_env
from rdsvend.proof import build_identity_proof

SERVER_ID = "rdsvend-prod.111122223333"


@pytest.fixture
def session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="AKIDSTSENDPOINT", aws_secret_access_key="sts-endpoint-secret",
                         region_name="eu-west-1")


def config() -> ProofConfig:
    # What the function configures itself with in eu-west-1 when RDSVEND_STS_ENDPOINT is unset.
    return proof_config_from_env({"AWS_REGION": "eu-west-1", "RDSVEND_SERVER_ID": SERVER_ID})


def test_the_function_defaults_to_its_regional_endpoint() -> None:
    assert config().sts_endpoint == "https://sts.eu-west-1.amazonaws.com"


def test_a_proof_for_the_regional_endpoint_is_accepted(session: boto3.Session) -> None:
    proof = build_identity_proof(SERVER_ID, session=session, region="eu-west-1")
    assert proof["url"] == "https://sts.eu-west-1.amazonaws.com/"
    request = parse_identity_proof(proof, config(), datetime.now(UTC))
    assert request.access_key_id == "AKIDSTSENDPOINT"


@pytest.mark.parametrize("endpoint", ["https://sts.amazonaws.com", "https://sts.us-east-1.amazonaws.com"])
def test_a_proof_for_the_global_or_another_regions_endpoint_is_refused(session: boto3.Session, endpoint: str) -> None:
    proof = build_identity_proof(SERVER_ID, session=session, region="eu-west-1", endpoint_url=endpoint)
    with pytest.raises(IdentityProofError) as raised:
        parse_identity_proof(proof, config(), datetime.now(UTC))
    assert str(raised.value) == "identity proof: url is not this server's STS endpoint"
