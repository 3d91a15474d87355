"""The canary's checks for password users on the local stack: the seeded secrets pass, a
password changed behind the secret's back fails ``db.password_login``, a password user put in
``rds_iam`` fails ``db.not_iam`` (and its login), and the doctor says why. Every fault is undone."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Query

from chalicelib.canary.explain import explain_target
from chalicelib.canary.model import TargetReport
from chalicelib.canary.runner import run_canary
from chalicelib.policy.loader import load_policy_file
from devtools.local.canary import local_canary_deps, local_canary_env
from devtools.local.stack import LocalStack
from tests.support.canary_samples import check_of

pytestmark = pytest.mark.e2e  # starts a server: not in the fast tier

SINGLE = "orders-local/ledger_batch"
ALTERNATING = "orders-local/reports_legacy"
PASSWORD_IDS = ["rds.found", "rds.endpoint", "secret.found", "secret.rotation", "db.password_login",
                "db.not_iam", "db.tier"]


@pytest.fixture(scope="module")
def canary(local_stack: LocalStack) -> Callable[[str], TargetReport]:
    info = local_stack.info
    policy = load_policy_file(info.policy_path)
    deps = local_canary_deps(info, policy, env=local_canary_env(info))

    def run(key: str) -> TargetReport:
        db, user = key.split("/")
        report = run_canary(policy, deps, targets=[(policy.databases[db], policy.databases[db].users[user])])
        return report.targets[0]
    return run


@pytest.fixture(scope="module")
def current(local_stack: LocalStack) -> Callable[[str], dict[str, Any]]:
    info = local_stack.info
    sm = info.seeded.execution.session(info.region).client("secretsmanager", endpoint_url=info.moto_url)

    def read(name: str) -> dict[str, Any]:
        answer = sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
        secret: dict[str, Any] = json.loads(answer["SecretString"])
        return secret

    return read


def admin(local_stack: LocalStack, statement: Query) -> None:
    with psycopg.connect(local_stack.admin_dsn, dbname="orders", autocommit=True) as conn:
        conn.execute(statement)


@pytest.mark.parametrize("key", [SINGLE, ALTERNATING])
def test_seeded_password_users_pass_every_check(canary: Callable[[str], TargetReport], key: str) -> None:
    target = canary(key)
    assert [c.id for c in target.checks] == PASSWORD_IDS
    assert {c.id: c.status for c in target.checks} == dict.fromkeys(PASSWORD_IDS, "pass"), target.to_dict()
    assert check_of(target, "secret.rotation").details["rotation_days"] == 30


def test_a_password_that_no_longer_works_fails_password_login(local_stack: LocalStack,
                                                              canary: Callable[[str], TargetReport],
                                                              current: Callable[[str], dict[str, Any]]) -> None:
    secret = current("rdsvend/orders-local/ledger_batch")
    admin(local_stack, "ALTER ROLE ledger_batch PASSWORD 'not-what-the-secret-says-9'")
    try:
        target = canary(SINGLE)
    finally:
        admin(local_stack, sql.SQL("ALTER ROLE ledger_batch PASSWORD {}").format(sql.Literal(secret["password"])))
    login = check_of(target, "db.password_login")
    assert login.status == "fail" and login.details["error_kind"] == "auth"
    assert 'password authentication failed for user "ledger_batch"' in login.message
    assert "rdsvend rotate resumes it" in login.fix
    assert {c.id for c in target.problems} == {"db.password_login"}  # the rest still passes
    text = json.dumps(target.to_dict()) + explain_target(target)
    assert secret["password"] not in text and "not-what-the-secret-says-9" not in text
    assert "AWSPENDING" in explain_target(target)
    assert canary(SINGLE).status == "pass"  # repaired


def test_a_password_user_in_rds_iam_fails_not_iam(local_stack: LocalStack,
                                                  canary: Callable[[str], TargetReport]) -> None:
    admin(local_stack, "GRANT rds_iam TO ledger_batch")
    try:
        target = canary(SINGLE)
    finally:
        admin(local_stack, "REVOKE rds_iam FROM ledger_batch")
    not_iam = check_of(target, "db.not_iam")
    assert not_iam.status == "fail"
    assert "ledger_batch is a member of rds_iam" in not_iam.message
    assert not_iam.fix == "REVOKE rds_iam FROM ledger_batch;"
    # and that is why its password is refused: RDS sends rds_iam members to IAM authentication
    assert check_of(target, "db.password_login").status == "fail"
    assert "can log in only with an IAM auth token" in explain_target(target)
    assert canary(SINGLE).status == "pass"
