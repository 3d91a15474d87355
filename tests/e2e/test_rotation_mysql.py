"""Password rotation for the MySQL family end to end on the local stack: the local MariaDB
(TLS verified, reached like an RDS endpoint), the local Secrets Manager, the ``rotate``
function's body step by step (:func:`devtools.local.secrets.rotate_locally`).

Each test leaves AWSCURRENT of every secret logging in.
"""
from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from chalicelib.canary.model import TargetReport
from chalicelib.policy.loader import load_policy_file
from chalicelib.rotation.event import STEPS
from devtools.local.mariadb import mariadb_available
from devtools.local.secrets import rotate_locally
from devtools.local.stack import LocalStack
from tests.support.canary_samples import check_of

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not mariadb_available(), reason="MariaDB server binaries not installed")]

SINGLE = "rdsvend/shop-local/shop_batch"
ALTERNATING = "rdsvend/shop-local/shop_reports"


@pytest.fixture(scope="module")
def sm(local_stack: LocalStack) -> Any:
    info = local_stack.info
    return info.seeded.execution.session(info.region).client("secretsmanager", endpoint_url=info.moto_url)


@pytest.fixture(scope="module")
def rotate(local_stack: LocalStack, sm: Any) -> Callable[..., str]:
    policy = load_policy_file(local_stack.info.policy_path)
    env = {"PGSSLROOTCERT": local_stack.ca_path}

    def run(name: str, **kwargs: Any) -> str:
        return rotate_locally(sm.describe_secret(SecretId=name)["ARN"], sm, policy=policy, env=env, **kwargs)
    return run


def value(sm: Any, name: str, stage: str = "AWSCURRENT", version: str | None = None) -> dict[str, Any]:
    kwargs = {"SecretId": name, "VersionStage": stage, **({"VersionId": version} if version else {})}
    secret: dict[str, Any] = json.loads(sm.get_secret_value(**kwargs)["SecretString"])
    return secret


def login(local_stack: LocalStack, secret: dict[str, Any]) -> Any:
    ctx = ssl.create_default_context(cafile=local_stack.ca_path)
    return pymysql.connect(host=secret["host"], port=secret["port"], user=secret["username"],
                           password=secret["password"], database=secret["dbname"], ssl=ctx, connect_timeout=5,
                           autocommit=True)


def refused(local_stack: LocalStack, secret: dict[str, Any]) -> str:
    with pytest.raises(pymysql.err.OperationalError) as info:
        login(local_stack, secret).close()
    assert info.value.args[0] == 1045
    return str(info.value)


def rows(conn: Any, query: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def test_single_user_rotation_refuses_the_old_password_and_accepts_the_new(local_stack: LocalStack, sm: Any,
                                                                           rotate: Callable[..., str],
                                                                           capsys: pytest.CaptureFixture[str],
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    old = value(sm, SINGLE)
    rotate(SINGLE)
    new = value(sm, SINGLE)
    out = capsys.readouterr()
    logged = out.out + out.err + caplog.text
    assert "rotation setSecret for" in logged  # the function's log lines were captured ...
    assert old["password"] not in logged and new["password"] not in logged  # ... and hold no password
    assert (new["username"], new["engine"]) == ("shop_batch", "mariadb") and new["password"] != old["password"]
    assert "Access denied for user 'shop_batch'" in refused(local_stack, old)
    with login(local_stack, new) as conn:
        assert rows(conn, "SELECT COUNT(*) FROM items")[0][0] == 3


def test_alternating_users_share_tables_before_and_after(local_stack: LocalStack, sm: Any,
                                                         rotate: Callable[..., str]) -> None:
    rotate(ALTERNATING)
    current, previous = value(sm, ALTERNATING), value(sm, ALTERNATING, "AWSPREVIOUS")
    assert {current["username"], previous["username"]} == {"shop_reports", "shop_reports_clone"}
    made = []
    for creator, reader in ((current, previous), (previous, current)):
        table = f"made_by_{creator['username']}"
        with login(local_stack, creator) as conn:
            assert rows(conn, "SELECT CURRENT_ROLE()")[0][0] == "shop_reports_owner"
            rows(conn, f"DROP TABLE IF EXISTS {table}")
            rows(conn, f"CREATE TABLE {table} (n INT)")
            rows(conn, f"INSERT INTO {table} VALUES (1)")
        made.append(table)
        with login(local_stack, reader) as conn:
            assert rows(conn, f"SELECT n FROM {table}")[0][0] == 1
            assert rows(conn, "SELECT COUNT(*) FROM items")[0][0] == 3
    rotate(ALTERNATING)
    after, before = value(sm, ALTERNATING), value(sm, ALTERNATING, "AWSPREVIOUS")
    assert after["username"] == previous["username"] and before == current
    refused(local_stack, previous)
    for secret in (after, before):
        with login(local_stack, secret) as conn:
            for table in [*made, "items"]:
                rows(conn, f"SELECT COUNT(*) FROM {table}")
    with login(local_stack, after) as conn:
        for table in made:
            rows(conn, f"DROP TABLE {table}")


@pytest.mark.parametrize("name", [SINGLE, ALTERNATING])
def test_every_step_run_twice_is_harmless(local_stack: LocalStack, sm: Any, rotate: Callable[..., str],
                                          name: str) -> None:
    token = None
    for step in STEPS:
        token = rotate(name, steps=(step, step), token=token)
        if step == "createSecret":
            pending = value(sm, name, "AWSPENDING", token)
    assert value(sm, name) == pending
    login(local_stack, pending).close()


def test_rotation_interrupted_after_set_secret_resumes_and_the_client_retries(local_stack: LocalStack, sm: Any,
                                                                              rotate: Callable[..., str]) -> None:
    from rdsvend import PasswordSource, connect_password

    old = value(sm, SINGLE)
    token = rotate(SINGLE, steps=("createSecret", "setSecret"))
    pending = value(sm, SINGLE, "AWSPENDING", token)
    refused(local_stack, old)
    with connect_password(PasswordSource(SINGLE, client=sm), environ={"PGSSLROOTCERT": local_stack.ca_path}) as conn:
        assert rows(conn, "SELECT CURRENT_USER()")[0][0].startswith("shop_batch@")
    assert rotate(SINGLE, steps=("testSecret", "finishSecret")) == token
    assert value(sm, SINGLE) == pending


@pytest.fixture(scope="module")
def canary(local_stack: LocalStack) -> Callable[[str], TargetReport]:
    from chalicelib.canary.runner import run_canary
    from devtools.local.canary import local_canary_deps, local_canary_env

    info = local_stack.info
    policy = load_policy_file(info.policy_path)
    deps = local_canary_deps(info, policy, env=local_canary_env(info))

    def run(user: str) -> TargetReport:
        db = policy.databases["shop-local"]
        return run_canary(policy, deps, targets=[(db, db.users[user])]).targets[0]
    return run


def admin_sql(local_stack: LocalStack, statement: str, params: tuple[Any, ...] | None = None) -> None:
    from urllib.parse import unquote, urlsplit

    dsn = urlsplit(local_stack.info.databases["shop-local"]["admin_dsn"])
    assert dsn.username is not None and dsn.password is not None
    with login(local_stack, {"host": dsn.hostname, "port": dsn.port, "username": unquote(dsn.username),
                             "password": unquote(dsn.password), "dbname": None}) as conn:
        with conn.cursor() as cur:
            cur.execute(statement, params)


@pytest.mark.parametrize("user", ["shop_batch", "shop_reports"])
def test_seeded_mysql_password_users_pass_the_canary(canary: Callable[[str], TargetReport], user: str) -> None:
    target = canary(user)
    assert {c.id: c.status for c in target.checks} == dict.fromkeys(
        ["rds.found", "rds.endpoint", "secret.found", "secret.rotation", "db.password_login", "db.not_iam",
         "db.tier"], "pass"), target.to_dict()


def test_mysql_password_that_no_longer_works_fails_password_login(local_stack: LocalStack, sm: Any,
                                                                  canary: Callable[[str], TargetReport]) -> None:
    current = value(sm, SINGLE)
    admin_sql(local_stack, "ALTER USER 'shop_batch'@'%%' IDENTIFIED BY %s", ("changed-behind-its-back-3",))
    try:
        target = canary("shop_batch")
    finally:
        admin_sql(local_stack, "ALTER USER 'shop_batch'@'%%' IDENTIFIED BY %s", (current["password"],))
    login_check = check_of(target, "db.password_login")
    assert login_check.status == "fail" and login_check.details["error_kind"] == "auth"
    assert "(1045)" in login_check.message
    assert {c.id for c in target.problems} == {"db.password_login"}
    text = json.dumps(target.to_dict())
    assert current["password"] not in text and "changed-behind-its-back-3" not in text
    assert canary("shop_batch").status == "pass"


def test_mysql_password_user_identified_with_the_iam_plugin_fails_not_iam(
    local_stack: LocalStack,
    sm: Any,
    canary: Callable[[str], TargetReport],
) -> None:
    current = value(sm, SINGLE)
    marker = json.dumps([{}, {"plugin": "AWSAuthenticationPlugin", "authentication_string": "RDS"}])
    admin_sql(local_stack, "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.auth_or', JSON_EXTRACT(%s, '$')) "
                           "WHERE User = 'shop_batch' AND Host = '%%'", (marker,))
    admin_sql(local_stack, "FLUSH PRIVILEGES")
    try:
        target = canary("shop_batch")
    finally:
        admin_sql(local_stack, "ALTER USER 'shop_batch'@'%%' IDENTIFIED BY %s", (current["password"],))
    not_iam = check_of(target, "db.not_iam")
    assert not_iam.status == "fail" and "identified with AWSAuthenticationPlugin" in not_iam.message
    assert check_of(target, "db.password_login").status == "fail"  # the front asks it for a token
    assert canary("shop_batch").status == "pass"


def backend_rows(local_stack: LocalStack, statement: str) -> list[tuple[Any, ...]]:
    """As the backend's own root, over its private socket (the OS account's unix_socket login):
    what RDS's master user may not do, such as turning the general log on."""
    import os
    import pwd
    from pathlib import Path

    base = Path(local_stack.info.databases["shop-local"]["base_dir"])
    conn = pymysql.connect(unix_socket=str(base / "run" / "mariadbd.sock"), user=pwd.getpwuid(os.getuid()).pw_name,
                           autocommit=True, connect_timeout=5)
    try:
        return list(rows(conn, statement))
    finally:
        conn.close()


def test_mariadb_general_log_never_holds_a_rotated_password(local_stack: LocalStack, sm: Any,
                                                            rotate: Callable[..., str]) -> None:
    """MariaDB's general log prints statements as they arrive: the new password must arrive hashed
    (mysql_native_password's ``*`` form), for one's own password and for the other login of a pair."""
    backend_rows(local_stack, "SET GLOBAL log_output = 'TABLE'")
    backend_rows(local_stack, "TRUNCATE TABLE mysql.general_log")
    backend_rows(local_stack, "SET GLOBAL general_log = 1")
    try:
        rotate(SINGLE)
        rotate(ALTERNATING)
    finally:
        backend_rows(local_stack, "SET GLOBAL general_log = 0")
    logged = [bytes(r[0]).decode("utf-8", "replace") if isinstance(r[0], bytes | bytearray) else str(r[0])
              for r in backend_rows(local_stack, "SELECT argument FROM mysql.general_log")]
    backend_rows(local_stack, "TRUNCATE TABLE mysql.general_log")
    changes = [line for line in logged if "PASSWORD" in line.upper() and ("SET PASSWORD" in line.upper()
                                                                          or "ALTER USER" in line.upper())]
    assert any(line.upper().startswith("SET PASSWORD") for line in changes), changes  # shop_batch's own
    assert any("IDENTIFIED BY PASSWORD" in line.upper() for line in changes), changes  # the pair's other login
    passwords = {value(sm, name, stage)["password"] for name in (SINGLE, ALTERNATING)
                 for stage in ("AWSCURRENT", "AWSPREVIOUS")}
    leaked = [line for line in logged for password in passwords if password in line]
    assert leaked == []
    for name in (SINGLE, ALTERNATING):
        login(local_stack, value(sm, name)).close()
