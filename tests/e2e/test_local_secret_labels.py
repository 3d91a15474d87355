"""Secrets Manager's staging labels on the local AWS are AWS's (devtools.local.secret_labels):
one AWSCURRENT always, AWSPREVIOUS on the version that had it, through PutSecretValue,
UpdateSecretVersionStage and a rotation (createSecret stages AWSPENDING, finishSecret moves
AWSCURRENT). moto alone leaves two versions AWSCURRENT after the second step below."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.local.aws import AccountSessions
from devtools.local.stack import LocalStack

pytestmark = pytest.mark.e2e

SERVICE = "222222222222"


@pytest.fixture
def secrets(local_stack: LocalStack) -> Iterator[tuple[Any, str]]:
    info = local_stack.info
    sm = AccountSessions(info.moto_url, info.region, info.seeded.management_account).client("secretsmanager", SERVICE)
    name = f"labels-test/{uuid.uuid4().hex[:8]}"
    made = sm.create_secret(Name=name, SecretString="v1", ClientRequestToken="v1" * 16)
    try:
        yield sm, made["ARN"]
    finally:
        sm.delete_secret(SecretId=made["ARN"], ForceDeleteWithoutRecovery=True)


def _labels(sm: Any, arn: str) -> dict[str, list[str]]:
    stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    return {vid[:2]: sorted(labels) for vid, labels in stages.items() if labels}


def _with(labels: dict[str, list[str]], label: str) -> list[str]:
    return [vid for vid, stages in labels.items() if label in stages]


def test_stage_labels_follow_aws_through_put_update_and_a_rotation(secrets: tuple[Any, str]) -> None:
    sm, arn = secrets
    sm.put_secret_value(SecretId=arn, SecretString="v2", ClientRequestToken="v2" * 16)
    assert _labels(sm, arn) == {"v1": ["AWSPREVIOUS"], "v2": ["AWSCURRENT"]}

    # An operator puts the previous value back as current.
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId="v1" * 16,
                                   RemoveFromVersionId="v2" * 16)
    assert _labels(sm, arn) == {"v1": ["AWSCURRENT"], "v2": ["AWSPREVIOUS"]}
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "v1"

    # ... then edits it: the new value is the only AWSCURRENT, v1 is AWSPREVIOUS (moto: v1 and v3 both current).
    sm.put_secret_value(SecretId=arn, SecretString="v3", ClientRequestToken="v3" * 16)
    labels = _labels(sm, arn)
    assert _with(labels, "AWSCURRENT") == ["v3"]
    assert labels == {"v1": ["AWSPREVIOUS"], "v3": ["AWSCURRENT"]}
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "v3"

    # A rotation: createSecret stages the new value AWSPENDING, nothing else moves ...
    sm.put_secret_value(SecretId=arn, SecretString="v4", ClientRequestToken="v4" * 16, VersionStages=["AWSPENDING"])
    assert _labels(sm, arn) == {"v1": ["AWSPREVIOUS"], "v3": ["AWSCURRENT"], "v4": ["AWSPENDING"]}
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "v3"
    # ... finishSecret moves AWSCURRENT to it, and AWSPREVIOUS follows to the old current.
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId="v4" * 16,
                                   RemoveFromVersionId="v3" * 16)
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId="v4" * 16)
    assert _labels(sm, arn) == {"v3": ["AWSPREVIOUS"], "v4": ["AWSCURRENT"]}
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "v4"
    assert sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")["SecretString"] == "v3"


def test_a_put_with_custom_labels_keeps_them_when_current_moves(secrets: tuple[Any, str]) -> None:
    sm, arn = secrets
    sm.put_secret_value(SecretId=arn, SecretString="v2", ClientRequestToken="v2" * 16, VersionStages=["BLUE"])
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId="v2" * 16,
                                   RemoveFromVersionId="v1" * 16)
    sm.put_secret_value(SecretId=arn, SecretString="v3", ClientRequestToken="v3" * 16)
    assert _labels(sm, arn) == {"v2": ["AWSPREVIOUS", "BLUE"], "v3": ["AWSCURRENT"]}
