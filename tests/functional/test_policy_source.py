"""Where the policy comes from: files re-read on change, SSM cached 60 s, failures refuse."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.clock import FrozenClock
from chalicelib.errors import PolicyLoadError, PolicyUnavailableError
from chalicelib.policy_source import FilePolicySource, SsmPolicySource, policy_source_from_env

REPO = Path(__file__).resolve().parents[2]
GOOD = (REPO / "policies" / "access.yaml").read_text()


@pytest.fixture
def ssm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def test_ssm_policy_is_cached_60_seconds_then_reloaded(ssm: Any) -> None:
    from datetime import datetime

    ssm.put_parameter(Name="/rdsvend/dev/access-policy", Value=GOOD, Type="String")
    clock = FrozenClock(datetime(2026, 11, 22, tzinfo=UTC))
    source = SsmPolicySource("/rdsvend/dev/access-policy", lambda: ssm, clock=clock)
    assert [r.id for r in source.get().rules][0] == "orders-api"
    changed = GOOD.replace("id: orders-api", "id: orders-api-v2")
    ssm.put_parameter(Name="/rdsvend/dev/access-policy", Value=changed, Type="String", Overwrite=True)
    clock.advance(59)
    assert source.get().rules[0].id == "orders-api"
    clock.advance(2)
    assert source.get().rules[0].id == "orders-api-v2"


def test_ssm_policy_that_becomes_invalid_stops_being_served(ssm: Any) -> None:
    from datetime import datetime

    ssm.put_parameter(Name="/p", Value=GOOD, Type="SecureString")
    clock = FrozenClock(datetime(2026, 11, 22, tzinfo=UTC))
    source = SsmPolicySource("/p", lambda: ssm, clock=clock)
    source.get()
    ssm.put_parameter(Name="/p", Value=GOOD.replace("engine: postgres", "engine: db2", 1), Type="SecureString",
                      Overwrite=True)
    clock.advance(61)
    with pytest.raises(PolicyLoadError, match=r"ssm:/p, field 'databases.orders-prod.engine'"):
        source.get()


def test_missing_parameter_is_unavailable(ssm: Any) -> None:
    source = SsmPolicySource("/nope", lambda: ssm)
    with pytest.raises(PolicyUnavailableError, match="ParameterNotFound"):
        source.get()


def test_env_selects_ssm_or_file(ssm: Any, tmp_path: Path) -> None:
    ssm.put_parameter(Name="/rdsvend/prod/access-policy", Value=GOOD, Type="String")
    source = policy_source_from_env({"RDSVEND_POLICY": "ssm:/rdsvend/prod/access-policy",
                                     "AWS_DEFAULT_REGION": "us-east-1"})
    assert isinstance(source, SsmPolicySource) and source.get().databases
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    assert isinstance(policy_source_from_env({"RDSVEND_POLICY": str(path)}), FilePolicySource)
    with pytest.raises(PolicyUnavailableError):
        policy_source_from_env({"RDSVEND_POLICY": "ssm:"})


def test_file_source_missing_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(PolicyUnavailableError, match="cannot read policy file"):
        FilePolicySource(tmp_path / "gone.yaml").get()
