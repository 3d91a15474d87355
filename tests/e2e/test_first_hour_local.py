"""The first hour on the local stack, through the real gateway, STS and databases: a wrong
secret key is a credential problem (never ``forbidden``, never "add IAM permissions"),
``exec`` refuses a client of the other engine, ``whoami`` and ``databases`` answer, and
``local env`` exports nothing it would not unset with the stack down."""
from __future__ import annotations

import json

import pytest

from devtools.local.stack import LocalStack
from devtools.local.state import LOCAL_ENV_NAMES, LOCAL_STACK_ENV
from tests.support.local_shell import rdsvend, shell_env

pytestmark = pytest.mark.e2e


def test_a_wrong_secret_key_is_a_credential_error_at_the_gateway(local_stack: LocalStack) -> None:
    env = {**shell_env(local_stack, "caller"), "AWS_SECRET_ACCESS_KEY": "not-the-secret-key-0000000000000000000"}
    done = rdsvend(env, "token", "orders-local", "orders_app")
    assert done.returncode == 2
    assert done.stderr.startswith("rdsvend: error: bad_credentials: The request signature we calculated does not "
                                  "match the signature you provided.")
    assert "forbidden" not in done.stderr and done.stderr.count("\n") == 1


def test_canary_and_doctor_with_a_wrong_secret_key_blame_the_credentials(local_stack: LocalStack) -> None:
    env = {**shell_env(local_stack, "operator"), "AWS_SECRET_ACCESS_KEY": "not-the-secret-key-0000000000000000000"}
    for args in (("canary", "--database", "orders-local", "--json"), ("doctor", "orders-local", "orders_app", "--json")):
        done = rdsvend(env, *args)
        assert done.returncode == 1, done.stderr
        text = done.stdout
        report = json.loads(text)
        checks = [c for t in report.get("targets", [report]) for c in t.get("checks", [])]
        errors = [c for c in checks if c["status"] == "error"]
        assert errors, args
        for check in errors:
            if "SignatureDoesNotMatch" in check["message"]:
                assert "credentials themselves" in check["fix"], check
                assert "iam:" not in check["fix"] and "organizations:" not in check["fix"].lower(), check
        assert any("SignatureDoesNotMatch" in c["message"] for c in errors), args


def test_exec_refuses_psql_for_the_local_mariadb(local_stack: LocalStack) -> None:
    done = rdsvend(shell_env(local_stack, "caller"), "exec", "shop-local", "shop_app", "--", "psql", "-c", "select 1")
    assert done.returncode == 2
    assert "'psql' is a PostgreSQL client and 'shop-local' is a mariadb database" in done.stderr


def test_whoami_and_databases_answer_for_the_caller(local_stack: LocalStack) -> None:
    env = shell_env(local_stack, "caller")
    whoami = json.loads(rdsvend(env, "whoami", "--json").stdout)
    assert whoami["principal"] == "arn:aws:iam::333333333333:user/orders-api"
    listed = rdsvend(env, "databases").stdout
    assert "orders-local" in listed and "orders_app" in listed
    denied = rdsvend(shell_env(local_stack, "denied"), "databases")
    assert denied.returncode == 0 and denied.stdout.startswith("no database:")


def test_local_env_unsets_everything_it_exports(local_stack: LocalStack) -> None:
    for part in ("allowed", "denied", "operator"):
        exported = set(local_stack.info.env(part)) - {LOCAL_STACK_ENV}
        assert exported <= set(LOCAL_ENV_NAMES), exported - set(LOCAL_ENV_NAMES)
