"""Rotation never moves a password where no labelled version logs in.

setSecret logs in only with versions that name the server (engine, host, port) and, for
single-user, the login that AWSPENDING names; AWSPENDING must name the access policy's
database; a password set is proven at once with AWSPENDING or put back; a second rotation
in flight is refused. Secrets Manager is moto (in process); the database is a recording
stand-in that accepts the logins it is told to (PostgreSQL and MariaDB cannot be told to
accept by port here: the end-to-end rotation tests use the real servers).
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.engines.base import TierVerdict
from chalicelib.engines.secret import DbSecret
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy
from chalicelib.rotation.engines import DbSession
from chalicelib.rotation.errors import RotationDbError, RotationError
from chalicelib.rotation.event import RotationEvent
from chalicelib.rotation.handler import declared_database, declared_user
from chalicelib.rotation.protocol import Rotator
from devtools.local.secrets import LocalRotationStore

ACCT = "123456789012"
VALUE = {"engine": "postgres", "host": "db.example.internal", "port": 5432, "username": "reports",
         "password": "the-current-password-1", "dbname": "orders"}


def policy(port: int = 5432) -> AccessPolicy:
    return load_policy_text(f"""
version: 1
databases:
  orders:
    engine: postgres
    region: us-east-1
    instance: orders
    host: db.example.internal
    port: {port}
    users:
      reports: {{auth: password, tier: service-user, rotation: single-user,
                secret: "arn:aws:secretsmanager:us-east-1:{ACCT}:secret:rdsvend/orders/reports"}}
rules: []
""", "p.yaml")


class Database:
    """Accepts a login when (port, username, password) is one it holds; records every change."""

    def __init__(self, *logins: tuple[int, str, str]) -> None:
        self.logins = set(logins)
        self.changes: list[tuple[int, str]] = []
        self.attempts: list[int] = []

    def login(self, secret: DbSecret, *, ssl_root_cert: str | None, timeout: float) -> DbSession:
        self.attempts.append(secret.port)
        if (secret.port, secret.username, secret.password) not in self.logins:
            raise RotationDbError("password authentication failed", kind="auth")
        return Session(self, secret.port)


class Session:
    """A login to the stand-in: it sets passwords; single-user rotation asks nothing else."""

    def __init__(self, database: Database, port: int) -> None:
        self.database, self.port = database, port

    def set_password(self, username: str, password: str) -> None:
        database = self.database
        database.logins = {entry for entry in database.logins if (entry[0], entry[1]) != (self.port, username)}
        database.logins.add((self.port, username, password))
        database.changes.append((self.port, password))

    def current_role(self) -> str:
        raise AssertionError("single-user rotation does not ask for the current role")

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        raise AssertionError("single-user rotation makes no clone")

    def tier_check(self, username: str, tier: str | None) -> TierVerdict:
        raise AssertionError("single-user rotation checks no tier")

    def close(self) -> None:
        pass


@pytest.fixture
def sm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def make_secret(sm: Any, *values: dict[str, Any]) -> str:
    """A secret whose versions were ``values`` in turn (the last is AWSCURRENT)."""
    arn: str = sm.create_secret(Name="rdsvend/orders/reports", SecretString=json.dumps(values[0]))["ARN"]
    sm.rotate_secret(SecretId=arn, RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False)
    for value in values[1:]:
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps(value))
    return arn


def step(sm: Any, arn: str, name: str, token: str, db: Database, *, pol: AccessPolicy | None = None) -> str:
    pol = pol or policy()
    rotator = Rotator(LocalRotationStore(sm, token), lambda meta: declared_user(pol, meta),
                      engine_for_secret=lambda secret: db, database_for=lambda meta: declared_database(pol, meta))
    return rotator.run(RotationEvent(step=name, secret_id=arn, token=token)).action


def refusal(sm: Any, arn: str, name: str, token: str, db: Database, **kwargs: Any) -> str:
    with pytest.raises(RotationError) as caught:
        step(sm, arn, name, token, db, **kwargs)
    line = caught.value.line()
    assert "\n" not in line and "the-current-password-1" not in line and "other-password-2" not in line
    return line


def test_a_previous_version_naming_another_server_is_never_logged_in_with(sm: Any) -> None:
    # AWSCURRENT was edited (now names the right port 5432 with a password the server no longer
    # has); AWSPREVIOUS names another server of the same engine (5433) where its password works.
    wrong = VALUE | {"port": 5433, "password": "other-password-2"}
    arn = make_secret(sm, wrong, VALUE | {"password": "edited-but-wrong-3"})
    db = Database((5432, "reports", "the-current-password-1"), (5433, "reports", "other-password-2"))
    token = str(uuid.uuid4())
    step(sm, arn, "createSecret", token, db)
    line = refusal(sm, arn, "setSecret", token, db)
    assert "AWSPREVIOUS names port '5433' where AWSPENDING names '5432'" in line
    assert db.changes == [] and 5433 not in db.attempts  # nothing changed, the other server never reached


def test_a_pending_value_naming_another_port_than_the_policy_is_refused_before_any_login(sm: Any) -> None:
    arn = make_secret(sm, VALUE | {"port": 5433})
    db = Database((5433, "reports", "the-current-password-1"))
    token = str(uuid.uuid4())
    step(sm, arn, "createSecret", token, db)
    line = refusal(sm, arn, "setSecret", token, db)
    assert line.endswith("AWSPENDING names port 5433, the access policy's database 'orders' port 5432")
    assert db.changes == [] and db.attempts == []


def test_a_current_value_naming_another_user_is_refused(sm: Any) -> None:
    arn = make_secret(sm, VALUE)
    db = Database((5432, "reports", "the-current-password-1"))
    token = str(uuid.uuid4())
    step(sm, arn, "createSecret", token, db)
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps(VALUE | {"username": "reports_x"}),
                        VersionStages=["AWSCURRENT"])
    line = refusal(sm, arn, "setSecret", token, db)
    assert "AWSCURRENT names username 'reports_x' where AWSPENDING names 'reports'" in line
    assert db.changes == []


def test_a_password_that_does_not_then_log_in_is_put_back(sm: Any) -> None:
    arn = make_secret(sm, VALUE)

    class Forgetful(Database):
        """Takes the change but then refuses the new password (a proxy, a replica, a typo)."""

        def login(self, secret: DbSecret, *, ssl_root_cert: str | None, timeout: float) -> DbSession:
            if self.changes and secret.password == self.changes[-1][1] and len(self.changes) == 1:
                raise RotationDbError("password authentication failed", kind="auth")
            return super().login(secret, ssl_root_cert=ssl_root_cert, timeout=timeout)

    db = Forgetful((5432, "reports", "the-current-password-1"))
    token = str(uuid.uuid4())
    step(sm, arn, "createSecret", token, db)
    line = refusal(sm, arn, "setSecret", token, db)
    assert "AWSPENDING does not log in after its password was set (auth): the old password was put back" in line
    assert db.changes[-1] == (5432, "the-current-password-1")
    assert (5432, "reports", "the-current-password-1") in db.logins  # AWSCURRENT still logs in


def test_a_second_rotation_in_flight_is_refused_naming_the_fix(sm: Any) -> None:
    arn = make_secret(sm, VALUE)
    db = Database((5432, "reports", "the-current-password-1"))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    step(sm, arn, "createSecret", first, db)
    line = refusal(sm, arn, "createSecret", second, db)
    assert f"version {first} is AWSPENDING too: another rotation is in flight" in line
    assert f"--remove-from-version-id {first}" in line
    assert db.changes == []
    # the fix the line names ends the first; then the second may start
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId=first)
    assert step(sm, arn, "createSecret", second, db) == "AWSPENDING created for login reports"
