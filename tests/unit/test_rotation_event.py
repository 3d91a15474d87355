"""Bad rotation events and bad secrets: one line naming the field, never a traceback or a password."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from chalicelib.policy.loader import load_policy_text
from chalicelib.rotation.errors import RotationEventError, RotationSecretError
from chalicelib.rotation.event import MAX_EVENT_BYTES, parse_event
from chalicelib.rotation.handler import RotationFailedError, handle_rotation
from chalicelib.rotation.secret import parse_secret

ARN = "arn:aws:secretsmanager:us-east-1:222222222222:secret:rdsvend/orders/reports-AbCdEf"
TOKEN = "0f7a6c1e-3b7c-4c2d-9a55-0d2b6f1e9c11"
GOOD = {"Step": "createSecret", "SecretId": ARN, "ClientRequestToken": TOKEN}


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def error(self, message: str, extra: Mapping[str, Any] | None = None) -> None:
        self.lines.append(json.dumps({"message": message, **(extra or {})}))

    info = error


def test_a_good_event_parses() -> None:
    event = parse_event(dict(GOOD, RotationToken="abc"))
    assert (event.step, event.secret_id, event.token) == ("createSecret", ARN, TOKEN)


@pytest.mark.parametrize("event, words", [
    (None, "must be a JSON object, not NoneType"),
    ([GOOD], "must be a JSON object, not list"),
    ("createSecret", "must be a JSON object, not str"),
    ({}, "missing field 'Step'"),
    ({k: v for k, v in GOOD.items() if k != "SecretId"}, "missing field 'SecretId'"),
    (dict(GOOD, Step=3), "field 'Step' must be a string, not int"),
    (dict(GOOD, ClientRequestToken=["x"]), "field 'ClientRequestToken' must be a string, not list"),
    (dict(GOOD, Step="deleteSecret"), "unknown Step 'deleteSecret'"),
    (dict(GOOD, Step="createsecret"), "unknown Step 'createsecret'"),
    (dict(GOOD, ClientRequestToken="short"), "invalid ClientRequestToken 'short'"),
    (dict(GOOD, SecretId="arn with spaces\nand newline"), "invalid SecretId 'arn with spaces\\nand newline'"),
    (dict(GOOD, Extra="x"), "unknown field 'Extra'"),
    (dict(GOOD, RotationToken="x" * (MAX_EVENT_BYTES + 1)), "more than 8192"),
])
def test_bad_events_are_one_line_errors(event: object, words: str) -> None:
    with pytest.raises(RotationEventError) as info:
        parse_event(event)
    assert words in str(info.value)
    log = Lines()
    with pytest.raises(RotationFailedError) as failed:
        handle_rotation(event, policy=object(), store=object(), env={}, log=log)  # type: ignore[arg-type]  # never reached: the event is refused first
    line = str(failed.value)
    assert line.startswith("rotation ") and words in line and "\n" not in line
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert len(log.lines) == 1 and "Traceback" not in log.lines[0]


def test_the_rotate_function_refuses_a_hostile_event_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.routes.rotation import rotate

    class Context:
        aws_request_id = "req-1"

    with pytest.raises(RotationFailedError) as info:
        rotate({"Step": "setSecret", "SecretId": ARN, "ClientRequestToken": "x" * 70}, Context())
    assert str(info.value) == (f"rotation setSecret failed for {ARN}: invalid ClientRequestToken "
                               f"'{'x' * 57}...'")


POLICY = load_policy_text(f"""
version: 1
databases:
  orders:
    engine: postgres
    region: us-east-1
    instance: orders
    users:
      reports: {{auth: password, secret: "{ARN[:-7]}"}}
rules: []
""", "p.yaml")


def test_secret_values_never_reach_an_error() -> None:
    password = "hunter2-very-secret"
    for bad in ({"engine": "oracle", "host": "h", "username": "u", "password": password},
                {"engine": "postgres", "host": "bad host", "username": "u", "password": password},
                {"engine": "postgres", "host": "h", "port": "x", "username": "u", "password": password},
                {"engine": "postgres", "host": "h", "username": "u;drop", "password": password},
                {"engine": "postgres", "host": "h", "username": "u", "password": [password]}):
        with pytest.raises(RotationSecretError) as info:
            parse_secret(json.dumps(bad))
        assert password not in str(info.value)
    with pytest.raises(RotationSecretError, match="not JSON"):
        parse_secret("{" + password)
    secret = parse_secret(json.dumps({"engine": "postgres", "host": "db.example", "username": "u",
                                      "password": password, "ssl": False}))
    assert password not in repr(secret)
    assert secret.port == 5432 and secret.extra == {"ssl": False}
