"""The rotation protocol's guards and createSecret against Secrets Manager (moto, in process):
rotation must be enabled, the token a version staged AWSPENDING, the secret declared by a
password user of the access policy; createSecret is idempotent and makes the clone's login for
alternating users. No database is reached here (the local-stack e2e tests do that)."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy
from chalicelib.rotation.handler import RotationFailedError, handle_rotation
from chalicelib.rotation.store import BotoSecretStore, SecretStore
from devtools.local.secrets import LocalRotationStore

ACCT = "123456789012"
VALUE = {"engine": "postgres", "host": "db.example.internal", "port": 5432, "username": "reports",
         "password": "the-current-password-1", "dbname": "orders"}


def policy(rotation: str = "single-user") -> AccessPolicy:
    return load_policy_text(f"""
version: 1
databases:
  orders:
    engine: postgres
    region: us-east-1
    instance: orders
    users:
      reports: {{auth: password, tier: service-user, rotation: {rotation},
                secret: "arn:aws:secretsmanager:us-east-1:{ACCT}:secret:rdsvend/orders/reports"}}
rules: []
""", "p.yaml")


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, extra: Mapping[str, Any] | None = None) -> None:
        self.lines.append(json.dumps({"message": message, **(extra or {})}))

    error = info


@pytest.fixture
def sm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def make_secret(sm: Any, value: dict[str, Any] = VALUE, *, enable: bool = True) -> str:
    arn: str = sm.create_secret(Name="rdsvend/orders/reports", SecretString=json.dumps(value))["ARN"]
    if enable:  # moto: enabling rotation without a Lambda copies AWSCURRENT into a new version
        sm.rotate_secret(SecretId=arn, RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False)
    return arn


def run(sm: Any, arn: str, step: str, token: str, *, rotation: str = "single-user", store: SecretStore | None = None,
        log: Log | None = None) -> dict[str, str]:
    return handle_rotation({"Step": step, "SecretId": arn, "ClientRequestToken": token}, policy=policy(rotation),
                           store=store or LocalRotationStore(sm, token), env={}, log=log or Log())


def refused(sm: Any, arn: str, step: str, token: str, **kwargs: Any) -> str:
    log = Log()
    with pytest.raises(RotationFailedError) as info:
        run(sm, arn, step, token, log=log, **kwargs)
    line = str(info.value)
    assert line.startswith(f"rotation {step} failed for {arn}: ") and "\n" not in line
    assert log.lines and all("the-current-password-1" not in entry for entry in log.lines)
    assert "the-current-password-1" not in line
    return line


def test_rotation_must_be_enabled(sm: Any) -> None:
    arn = make_secret(sm, enable=False)
    assert refused(sm, arn, "createSecret", str(uuid.uuid4())).endswith("rotation is not enabled on the secret")


def test_the_token_must_be_a_version_staged_awspending(sm: Any) -> None:
    arn = make_secret(sm)
    stranger = str(uuid.uuid4())
    line = refused(sm, arn, "setSecret", stranger, store=BotoSecretStore(sm))
    assert line.endswith(f"version {stranger} is not a version of the secret")
    previous = next(v for v, s in sm.describe_secret(SecretId=arn)["VersionIdsToStages"].items() if not s
                    or s == ["AWSPREVIOUS"])
    assert refused(sm, arn, "setSecret", previous, store=BotoSecretStore(sm)).endswith(
        f"version {previous} is not staged AWSPENDING")
    current = next(v for v, s in sm.describe_secret(SecretId=arn)["VersionIdsToStages"].items() if "AWSCURRENT" in s)
    done = run(sm, arn, "finishSecret", current, store=BotoSecretStore(sm))
    assert done["action"] == "nothing to do: the version is already AWSCURRENT"


def test_only_secrets_the_policy_declares_are_rotated(sm: Any) -> None:
    other = sm.create_secret(Name="rdsvend/orders/someone-else", SecretString=json.dumps(VALUE))["ARN"]
    sm.rotate_secret(SecretId=other, RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False)
    assert refused(sm, other, "createSecret", str(uuid.uuid4())).endswith(
        "no auth: password user of the access policy declares this secret")


def test_create_secret_is_idempotent_and_keeps_the_login(sm: Any) -> None:
    arn = make_secret(sm)
    token = str(uuid.uuid4())
    store = LocalRotationStore(sm, token)
    first = run(sm, arn, "createSecret", token, store=store)
    pending = sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")["SecretString"]
    second = run(sm, arn, "createSecret", token, store=store)
    assert first["action"] == "AWSPENDING created for login reports"
    assert second["action"] == "AWSPENDING already holds a new password"
    assert sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")["SecretString"] == pending
    new = json.loads(pending)
    assert new["username"] == "reports" and new["password"] != VALUE["password"] and len(new["password"]) == 32
    assert {k: v for k, v in new.items() if k != "password"} == {k: v for k, v in VALUE.items() if k != "password"}
    # nothing changed in AWSCURRENT: the database password changes only in setSecret
    assert json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]) == VALUE


def test_alternating_users_switch_to_the_clone_and_need_the_master_secret(sm: Any) -> None:
    arn = make_secret(sm)
    line = refused(sm, arn, "createSecret", str(uuid.uuid4()), rotation="alternating-users")
    assert line.endswith("alternating-users rotation needs 'masterarn' in the secret")
    master = sm.create_secret(Name="rdsvend/orders/master", SecretString=json.dumps(VALUE | {"username": "admin"}))
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps(VALUE | {"masterarn": master["ARN"]}))
    token = str(uuid.uuid4())
    run(sm, arn, "createSecret", token, rotation="alternating-users")
    pending = json.loads(sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")["SecretString"])
    assert (pending["username"], pending["masterarn"]) == ("reports_clone", master["ARN"])


def test_a_secret_that_is_not_a_database_secret_is_named_not_shown(sm: Any) -> None:
    arn = make_secret(sm, {"engine": "oracle", "host": "h", "username": "reports", "password": "the-current-password-1"})
    line = refused(sm, arn, "createSecret", str(uuid.uuid4()))
    assert "the AWSCURRENT value: invalid engine 'oracle'" in line
