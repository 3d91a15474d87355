"""``auth: password`` users in the access policy: ``secret`` and ``rotation`` validated at load."""
from __future__ import annotations

import textwrap

import pytest

from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import load_policy_text

SECRET = "arn:aws:secretsmanager:us-east-1:222222222222:secret:rdsvend/orders/reports_legacy-AbCdEf"


def policy(user_spec: str) -> str:
    return textwrap.dedent(f"""
        version: 1
        databases:
          orders-prod:
            engine: postgres
            region: us-east-1
            instance: orders-prod
            users:
              orders_app: {{auth: iam, tier: service-user}}
              reports_legacy: {user_spec}
        rules:
          - id: api
            effect: allow
            principals: ["arn:aws:iam::111122223333:role/api"]
            databases: [orders-prod]
            db_users: [orders_app]
        """)


def test_password_user_loads_with_secret_rotation_and_tier() -> None:
    loaded = load_policy_text(policy(f"{{auth: password, tier: service-user, rotation: alternating-users, "
                                     f"secret: '{SECRET}'}}"), "p.yaml")
    user = loaded.databases["orders-prod"].users["reports_legacy"]
    assert (user.auth, user.tier, user.rotation, user.secret) == ("password", "service-user",
                                                                  "alternating-users", SECRET)
    assert not user.vendable


def test_rotation_defaults_to_single_user() -> None:
    loaded = load_policy_text(policy(f"{{auth: password, secret: '{SECRET}'}}"), "p.yaml")
    assert loaded.databases["orders-prod"].users["reports_legacy"].rotation == "single-user"


@pytest.mark.parametrize("spec, field, words", [
    ("{auth: password}", "users.reports_legacy.secret", "needs 'secret'"),
    ("{auth: password, secret: 42}", "users.reports_legacy.secret", "must be a string"),
    ("{auth: password, secret: 'arn:aws:ssm:us-east-1:222222222222:parameter/x'}",
     "users.reports_legacy.secret", "invalid secret ARN"),
    ("{auth: password, secret: 'arn:aws:secretsmanager:us-east-1:2222:secret:x'}",
     "users.reports_legacy.secret", "invalid secret ARN"),
    ("{auth: password, secret: 'arn:aws:secretsmanager:us-east-1:222222222222:secret:'}",
     "users.reports_legacy.secret", "invalid secret ARN"),
    ("{auth: password, secret: 'arn:aws-cn:secretsmanager:us-east-1:222222222222:secret:x'}",
     "users.reports_legacy.secret", "partition aws-cn"),
    (f"{{auth: password, secret: '{SECRET}', rotation: multi-user}}", "users.reports_legacy.rotation",
     "invalid rotation 'multi-user'"),
    (f"{{auth: password, secret: '{SECRET}', rotation: [single-user]}}", "users.reports_legacy.rotation",
     "invalid rotation"),
    (f"{{auth: iam, secret: '{SECRET}'}}", "users.reports_legacy.secret", "only for auth: password"),
    ("{auth: kerberos, rotation: single-user}", "users.reports_legacy.rotation", "only for auth: password"),
    (f"{{auth: password, secret: '{SECRET}', rotaton: single-user}}", "users.reports_legacy",
     "unknown key 'rotaton'"),
])
def test_load_errors_name_file_database_user_and_field(spec: str, field: str, words: str) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(policy(spec), "policies/p.yaml")
    text = str(info.value)
    assert "policies/p.yaml" in text
    assert f"databases.orders-prod.{field}" in text
    assert words in text
    assert "\n" not in text


def test_hostile_secret_value_is_clipped_to_one_line() -> None:
    hostile = "arn:aws:secretsmanager:" + "x" * 5000 + "\\nINJECTED"
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(policy(f'{{auth: password, secret: "{hostile}"}}'), "p.yaml")
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)
