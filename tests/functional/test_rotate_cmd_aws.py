"""``rdsvend rotate --aws``: RotateSecret in AWS, then waiting for the new version. Secrets
Manager's side of a real rotation (invoking the rotate function in Lambda) cannot run here, so
the Secrets Manager client is botocore's Stubber answering as the service does; the local-stack
e2e tests run the four steps for real."""
from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import botocore.session
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner

from devtools.cli import rotate_cmd

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rdsvend/orders/reports"
TOKEN = "0f7a6c1e-3b7c-4c2d-9a55-0d2b6f1e9c11"


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "access.yaml"
    path.write_text(textwrap.dedent(f"""
        version: 1
        databases:
          orders:
            engine: postgres
            region: us-east-1
            instance: orders
            users:
              reports: {{auth: password, tier: service-user, secret: "{ARN}"}}
        rules: []
        """))
    return str(path)


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    stub = Stubber(client)
    monkeypatch.setattr(rotate_cmd, "_client", lambda region: client)
    monkeypatch.setattr("devtools.cli.rotate_cmd.time.sleep", lambda seconds: None)
    with stub:
        yield stub


def test_a_refused_rotate_secret_is_one_line_and_exit_1(policy_file: str, stubbed: Stubber) -> None:
    stubbed.add_client_error("rotate_secret", "AccessDeniedException", "User is not authorized",
                             expected_params={"SecretId": ARN})
    result = CliRunner().invoke(rotate_cmd.rotate, ["orders", "reports", "--policy", policy_file, "--aws"])
    assert result.exit_code == 1
    assert result.output.strip() == f"rdsvend: RotateSecret failed for {ARN}: AccessDeniedException"


def test_a_rotation_that_never_finishes_names_the_function_log(policy_file: str, stubbed: Stubber,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    stubbed.add_response("rotate_secret", {"ARN": ARN, "Name": "rdsvend/orders/reports", "VersionId": TOKEN},
                         {"SecretId": ARN})
    for _ in range(3):
        stubbed.add_response("describe_secret", {"ARN": ARN, "VersionIdsToStages": {
            "old-version-0000000000000000000000000": ["AWSCURRENT"], TOKEN: ["AWSPENDING"]}}, {"SecretId": ARN})
    clock = iter([0.0, 0.5, 1.5, 2.5, 3.5])  # the deadline passes on the third look
    monkeypatch.setattr("devtools.cli.rotate_cmd.time.monotonic", lambda: next(clock))
    result = CliRunner().invoke(rotate_cmd.rotate, ["orders", "reports", "--policy", policy_file, "--aws",
                                                    "--wait", "1"])
    assert result.exit_code == 1
    assert f"version {TOKEN} of {ARN} is not AWSCURRENT after 1 s: read the rotate function's log" in result.output
