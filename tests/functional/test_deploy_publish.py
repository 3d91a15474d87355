"""`publish_policy`: only a policy that loads reaches SSM, byte for byte (moto SSM)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import Result
from moto import mock_aws

from chalicelib.errors import PolicyLoadError, PolicyPublishError
from chalicelib.policy.loader import load_policy_text
from devtools.deploy.publish import parameter_name, publish_policy
from tests.support.policies import allow_rule, one_database_policy

PARAMETER = "/rdsvend/dev/access-policy"

VALID = "# reviewed in PR 42: comments travel with the policy\n" + one_database_policy(
    rules=[allow_rule("orders-api", ["arn:aws:iam::111122223333:role/orders-api-*"])])


@pytest.fixture
def ssm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def _write(tmp_path: Path, text: str, name: str = "access.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _stored(ssm: Any, name: str = PARAMETER) -> dict[str, Any]:
    parameter: dict[str, Any] = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    return parameter


def test_valid_policy_is_uploaded_verbatim_and_loads_back(ssm: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)

    version = publish_policy(path, PARAMETER, ssm)

    stored = _stored(ssm)
    assert version == 1 == stored["Version"]
    assert stored["Type"] == "String"
    assert stored["Value"] == VALID  # comments kept: what runs is what was reviewed
    policy = load_policy_text(stored["Value"], source=f"ssm:{PARAMETER}")
    assert list(policy.databases) == ["orders-prod"]


def test_republishing_overwrites_and_bumps_the_version(ssm: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)
    assert publish_policy(path, PARAMETER, ssm) == 1
    path.write_text(VALID.replace("orders-api-*", "orders-worker-*"), encoding="utf-8")

    assert publish_policy(path, "ssm:" + PARAMETER, ssm) == 2  # RDSVEND_POLICY's form works too
    assert "orders-worker-*" in _stored(ssm)["Value"]


def test_secure_string_on_request(ssm: Any, tmp_path: Path) -> None:
    publish_policy(_write(tmp_path, VALID), PARAMETER, ssm, secure=True)

    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Type"] == "SecureString"
    assert _stored(ssm)["Value"] == VALID


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (("principals:", "principls:"), "unknown key 'principls'"),
        (("databases: [orders-prod]", "databases: [billing-prod]"), "rule 'orders-api'"),
        (("  - id: orders-api\n", "  - id: orders-api\n    effect: allow\n"), "duplicate key 'effect'"),
    ],
)
def test_invalid_policy_is_refused_with_the_load_error_and_nothing_is_uploaded(
    ssm: Any, tmp_path: Path, mutation: tuple[Any, ...], expected: str
) -> None:
    path = _write(tmp_path, VALID.replace(*mutation))

    with pytest.raises(PolicyLoadError) as caught:
        publish_policy(path, PARAMETER, ssm)

    assert str(path) in str(caught.value)
    assert expected in str(caught.value)
    assert ssm.describe_parameters()["Parameters"] == []


def test_invalid_policy_never_replaces_the_published_one(ssm: Any, tmp_path: Path) -> None:
    good = _write(tmp_path, VALID, "good.yaml")
    bad = _write(tmp_path, VALID.replace("effect: allow", "effect: maybe"), "bad.yaml")
    publish_policy(good, PARAMETER, ssm)

    with pytest.raises(PolicyLoadError, match="effect"):
        publish_policy(bad, PARAMETER, ssm)

    stored = _stored(ssm)
    assert (stored["Version"], stored["Value"]) == (1, VALID)


def test_missing_file_is_a_load_error(ssm: Any, tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="cannot read file"):
        publish_policy(tmp_path / "nope.yaml", PARAMETER, ssm)
    assert ssm.describe_parameters()["Parameters"] == []


@pytest.mark.parametrize(
    "bad", ["rdsvend/dev/policy", "/", "/a//b", "/has space/x", "/aws/rdsvend", "ssm:/SSM/x", ""]
)
def test_bad_parameter_names_are_refused_before_anything_is_read(ssm: Any, tmp_path: Path, bad: str) -> None:
    with pytest.raises(PolicyPublishError, match="invalid parameter name"):
        publish_policy(tmp_path / "not-even-read.yaml", bad, ssm)


def test_parameter_name_accepts_both_forms() -> None:
    assert parameter_name("/rdsvend/prod/access-policy") == "/rdsvend/prod/access-policy"
    assert parameter_name("ssm:/rdsvend/prod/access-policy") == "/rdsvend/prod/access-policy"


def _padded(size: int) -> str:
    """VALID plus comment lines, exactly ``size`` bytes."""
    filler = size - len(VALID.encode())
    lines = []
    while filler > 0:
        line = "#" + "x" * min(filler - 2, 78) + "\n" if filler >= 2 else "\n"
        lines.append(line)
        filler -= len(line)
    text = VALID + "".join(lines)
    assert len(text.encode()) == size
    return text


def test_policy_between_4_and_8_kb_goes_to_the_advanced_tier(ssm: Any, tmp_path: Path) -> None:
    publish_policy(_write(tmp_path, _padded(6000)), PARAMETER, ssm)

    described = ssm.describe_parameters()["Parameters"]
    assert [(p["Name"], p["Tier"]) for p in described] == [(PARAMETER, "Advanced")]


def test_policy_too_big_for_ssm_is_refused_with_its_size(ssm: Any, tmp_path: Path) -> None:
    with pytest.raises(PolicyPublishError, match="9000 bytes.*at most 8192"):
        publish_policy(_write(tmp_path, _padded(9000)), PARAMETER, ssm)
    assert ssm.describe_parameters()["Parameters"] == []


def test_ssm_refusal_is_a_publish_error_naming_the_parameter(ssm: Any, tmp_path: Path) -> None:
    # SSM keeps 100 versions and will not drop a labelled oldest one: a real refusal.
    path = _write(tmp_path, VALID)
    publish_policy(path, PARAMETER, ssm)
    ssm.label_parameter_version(Name=PARAMETER, ParameterVersion=1, Labels=["reviewed"])
    for _ in range(99):
        ssm.put_parameter(Name=PARAMETER, Value="filler", Type="String", Overwrite=True)

    with pytest.raises(PolicyPublishError, match=f"ssm refused parameter '{PARAMETER}': ParameterMaxVersionLimitExceeded"):
        publish_policy(path, PARAMETER, ssm)
    assert _stored(ssm)["Version"] == 100


# -- `rdsvend policy publish` ------------------------------------------------------------
def _cli(args: list[str]) -> Result:
    from click.testing import CliRunner

    from devtools.cli.main import cli

    return CliRunner().invoke(cli, args)


def test_cli_publishes_and_prints_the_version(ssm: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)

    result = _cli(["policy", "publish", str(path), "--parameter", PARAMETER, "--region", "us-east-1"])

    assert result.exit_code == 0, result.output
    assert "(version 1)" in result.output
    assert _stored(ssm)["Value"] == VALID


@pytest.mark.parametrize(
    ("text", "parameter", "code", "expected"),
    [
        (VALID.replace("principals:", "principls:"), PARAMETER, 2, "unknown key 'principls'"),
        (VALID, "no-leading-slash", 2, "invalid parameter name 'no-leading-slash'"),
    ],
)
def test_cli_refusals_are_one_line_and_upload_nothing(ssm: Any, tmp_path: Path, text: str, parameter: str, code: int,
                                                      expected: str) -> None:
    path = _write(tmp_path, text)

    result = _cli(["policy", "publish", str(path), "--parameter", parameter, "--region", "us-east-1"])

    assert result.exit_code == code
    assert expected in result.output
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    assert ssm.describe_parameters()["Parameters"] == []
