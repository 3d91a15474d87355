"""Password rotation end to end on the local stack: the local Secrets Manager (moto server),
the real PostgreSQL with TLS, the ``rotate`` function's body run step by step the way Secrets
Manager drives it (:func:`devtools.local.secrets.rotate_locally`: moto cannot invoke Lambda).

Each test leaves the world valid: AWSCURRENT of every secret logs in.
"""
from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from chalicelib.policy.loader import load_policy_file
from chalicelib.policy.model import AccessPolicy
from chalicelib.rotation.event import STEPS
from chalicelib.rotation.handler import RotationFailedError
from devtools.local.secrets import rotate_locally
from devtools.local.stack import LocalStack

pytestmark = pytest.mark.e2e  # starts a server: not in the fast tier

SINGLE = "rdsvend/orders-local/ledger_batch"
ALTERNATING = "rdsvend/orders-local/reports_legacy"


@pytest.fixture(scope="module")
def sm(local_stack: LocalStack) -> Any:
    info = local_stack.info
    return info.seeded.execution.session(info.region).client("secretsmanager", endpoint_url=info.moto_url)


@pytest.fixture(scope="module")
def policy(local_stack: LocalStack) -> AccessPolicy:
    return load_policy_file(local_stack.info.policy_path)


@pytest.fixture
def rotate(local_stack: LocalStack, sm: Any, policy: AccessPolicy) -> Callable[..., str]:
    env = {"PGSSLROOTCERT": local_stack.ca_path}

    def run(name: str, **kwargs: Any) -> str:
        arn = sm.describe_secret(SecretId=name)["ARN"]
        return rotate_locally(arn, sm, policy=policy, env=env, **kwargs)
    return run


def value(sm: Any, name: str, stage: str = "AWSCURRENT", version: str | None = None) -> dict[str, Any]:
    kwargs = {"SecretId": name, "VersionStage": stage}
    if version:
        kwargs["VersionId"] = version
    secret: dict[str, Any] = json.loads(sm.get_secret_value(**kwargs)["SecretString"])
    return secret


def login(local_stack: LocalStack, secret: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(host=secret["host"], port=secret["port"], dbname=secret["dbname"],
                           user=secret["username"], password=secret["password"], sslmode="verify-full",
                           sslrootcert=local_stack.ca_path, connect_timeout=5, autocommit=True)


def refused(local_stack: LocalStack, secret: dict[str, Any]) -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        login(local_stack, secret).close()
    return str(info.value)


def test_single_user_rotation_refuses_the_old_password_and_accepts_the_new(local_stack: LocalStack, sm: Any,
                                                                           rotate: Callable[..., str]) -> None:
    old = value(sm, SINGLE)
    rotate(SINGLE)
    new = value(sm, SINGLE)
    assert new["username"] == old["username"] == "ledger_batch"
    assert new["password"] != old["password"]
    why = refused(local_stack, old)
    assert 'password authentication failed for user "ledger_batch"' in why
    with login(local_stack, new) as conn:
        assert conn.execute("SELECT count(*) FROM shop.orders").fetchone() == (3,)
    assert value(sm, SINGLE, "AWSPREVIOUS")["password"] == old["password"]


def test_alternating_users_share_tables_before_and_after(local_stack: LocalStack, sm: Any,
                                                         rotate: Callable[..., str]) -> None:
    first = value(sm, ALTERNATING)
    rotate(ALTERNATING)
    current, previous = value(sm, ALTERNATING), value(sm, ALTERNATING, "AWSPREVIOUS")
    assert {current["username"], previous["username"]} == {"reports_legacy", "reports_legacy_clone"}
    assert current["username"] != first["username"]
    assert previous["password"] == first["password"]  # the login not rotated keeps working
    made = []
    for creator, reader in ((current, previous), (previous, current)):
        table = f"shop.made_by_{creator['username']}"
        with login(local_stack, creator) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("reports_legacy_owner",)
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} (n int)")
            conn.execute(f"INSERT INTO {table} VALUES (1)")
        made.append(table)
        with login(local_stack, reader) as conn:
            assert conn.execute(f"SELECT n FROM {table}").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM shop.orders").fetchone() == (3,)
    rotate(ALTERNATING)
    after, before = value(sm, ALTERNATING), value(sm, ALTERNATING, "AWSPREVIOUS")
    assert after["username"] == previous["username"] and before["password"] == current["password"]
    assert "password authentication failed" in refused(local_stack, previous)  # its old password is gone
    for secret in (after, before):
        with login(local_stack, secret) as conn:
            for table in [*made, "shop.orders"]:
                conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    with login(local_stack, after) as conn:
        for table in made:
            conn.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("name", [SINGLE, ALTERNATING])
def test_every_step_run_twice_is_harmless(local_stack: LocalStack, sm: Any, rotate: Callable[..., str],
                                          name: str) -> None:
    old = value(sm, name)
    token = None
    for step in STEPS:
        token = rotate(name, steps=(step, step), token=token)
        if step == "createSecret":
            pending = value(sm, name, "AWSPENDING", token)
    new = value(sm, name)
    assert new == pending  # createSecret twice made one password, not two
    with login(local_stack, new):
        pass
    stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert stages[token] == ["AWSCURRENT"]  # finished: AWSPENDING taken off, as Secrets Manager does
    assert sum("AWSCURRENT" in s for s in stages.values()) == 1
    if name == SINGLE:
        assert "password authentication failed" in refused(local_stack, old)


def test_rotation_interrupted_after_set_secret_resumes(local_stack: LocalStack, sm: Any,
                                                       rotate: Callable[..., str]) -> None:
    old = value(sm, SINGLE)
    token = rotate(SINGLE, steps=("createSecret", "setSecret"))
    pending = value(sm, SINGLE, "AWSPENDING", token)
    # in flight: AWSCURRENT is the old value and no longer logs in; AWSPENDING does
    assert value(sm, SINGLE) == old
    assert "password authentication failed" in refused(local_stack, old)
    login(local_stack, pending).close()
    # setSecret again (Secrets Manager's retry): nothing changes
    rotate(SINGLE, steps=("setSecret",), token=token)
    login(local_stack, pending).close()
    # resumed without naming the token: the rotation in flight is found and finished
    assert rotate(SINGLE, steps=("testSecret", "finishSecret")) == token
    assert value(sm, SINGLE) == pending


def test_a_failing_step_names_step_and_secret_and_never_a_password(local_stack: LocalStack, sm: Any,
                                                                   rotate: Callable[..., str],
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # every logger at INFO, as in Lambda (botocore DEBUG prints bodies)
    arn = sm.describe_secret(SecretId=SINGLE)["ARN"]
    current = value(sm, SINGLE)
    # break the database's password behind the secret's back: setSecret cannot log in
    with psycopg.connect(local_stack.admin_dsn, autocommit=True) as admin:
        admin.execute("ALTER ROLE ledger_batch PASSWORD 'broken-out-of-band-0'")
    try:
        with pytest.raises(RotationFailedError) as info:
            rotate(SINGLE)
        line = str(info.value)
        assert line.startswith(f"rotation setSecret failed for {arn}: cannot log in as ledger_batch")
        assert "\n" not in line
        token = rotate(SINGLE, steps=())  # the rotation stays in flight: find its token
        pending = value(sm, SINGLE, "AWSPENDING", token)
    finally:
        with psycopg.connect(local_stack.admin_dsn, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("ALTER ROLE ledger_batch PASSWORD {}").format(
                psycopg.sql.Literal(current["password"])))
    rotate(SINGLE)  # resumes and completes with the database put back
    out = capsys.readouterr()
    logged = out.out + out.err + caplog.text + line
    assert "setSecret" in logged
    for secret in (current["password"], pending["password"], value(sm, SINGLE)["password"],
                   "broken-out-of-band-0"):
        assert secret not in logged


def cli_env(local_stack: LocalStack) -> dict[str, str]:
    """A shell on the local stack with the service's credentials (the secrets live in its account)."""
    import os

    info = local_stack.info
    keys = info.seeded.execution
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RDSVEND_", "PG"))}
    env.update(AWS_ENDPOINT_URL=info.moto_url, AWS_DEFAULT_REGION=info.region, AWS_ACCESS_KEY_ID=keys.access_key_id,
               AWS_SECRET_ACCESS_KEY=keys.secret_access_key, AWS_SESSION_TOKEN=keys.session_token,
               RDSVEND_POLICY=info.policy_path, PGSSLROOTCERT=info.ca_path)
    return env


def run_cli(local_stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "rdsvend.cli", "rotate", *args], env=cli_env(local_stack),
                          capture_output=True, text=True, timeout=120, check=False)


def test_rdsvend_rotate_on_the_local_stack(local_stack: LocalStack, sm: Any) -> None:
    old = value(sm, SINGLE)
    done = run_cli(local_stack, "orders-local", "ledger_batch")
    assert done.returncode == 0, done.stderr
    assert "orders-local/ledger_batch: rotated (single-user); AWSCURRENT logs in as ledger_batch" in done.stdout
    new = value(sm, SINGLE)
    assert new["password"] != old["password"]
    assert "password authentication failed" in refused(local_stack, old)
    for secret in (old["password"], new["password"]):
        assert secret not in done.stdout + done.stderr


@pytest.mark.parametrize("args, words", [
    (("orders-local", "orders_app"), "is an auth: iam user"),
    (("orders-local", "nobody"), "unknown db user 'nobody'"),
    (("nowhere", "ledger_batch"), "unknown database 'nowhere'"),
    (("orders-local",), "Missing argument"),
])
def test_rdsvend_rotate_bad_usage_exits_2(local_stack: LocalStack, args: tuple[str, ...], words: str) -> None:
    done = run_cli(local_stack, *args)
    assert done.returncode == 2 and words in done.stderr
    assert "Traceback" not in done.stderr


def test_rdsvend_rotate_exits_1_when_the_rotation_fails(local_stack: LocalStack, sm: Any) -> None:
    current = value(sm, SINGLE)
    with psycopg.connect(local_stack.admin_dsn, autocommit=True) as admin:
        admin.execute("ALTER ROLE ledger_batch PASSWORD 'changed-behind-the-secret-1'")
    try:
        done = run_cli(local_stack, "orders-local", "ledger_batch")
    finally:
        with psycopg.connect(local_stack.admin_dsn, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("ALTER ROLE ledger_batch PASSWORD {}").format(
                psycopg.sql.Literal(current["password"])))
    assert done.returncode == 1
    assert done.stderr.startswith("rdsvend: rotation setSecret failed for arn:aws:secretsmanager:")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "changed-behind-the-secret-1" not in done.stdout + done.stderr
    assert current["password"] not in done.stdout + done.stderr
    again = run_cli(local_stack, "orders-local", "ledger_batch")  # a rotation is in flight: refused, as RotateSecret
    assert again.returncode == 1 and "a rotation is in flight" in again.stderr and "--resume" in again.stderr
    finished = run_cli(local_stack, "orders-local", "ledger_batch", "--resume")  # finishes the one in flight
    assert finished.returncode == 0, finished.stderr


def start_cli(local_stack: LocalStack, *args: str) -> subprocess.Popen[str]:
    import sys

    return subprocess.Popen([sys.executable, "-m", "rdsvend.cli", "rotate", *args], env=cli_env(local_stack),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_rotations_never_lose_the_password(local_stack: LocalStack, sm: Any) -> None:
    refusals = 0
    for _ in range(3):
        pair = [start_cli(local_stack, "orders-local", "ledger_batch") for _ in range(2)]
        answers = [proc.communicate(timeout=180) for proc in pair]
        codes = sorted(proc.returncode for proc in pair)
        assert codes in ([0, 0], [0, 1]), answers
        for proc, (_out, err) in zip(pair, answers, strict=True):
            if proc.returncode:
                refusals += 1
                assert "refused: another rotation of it is running" in err and len(err.splitlines()) == 1
        login(local_stack, value(sm, SINGLE)).close()  # AWSCURRENT logs in after every pair
    assert refusals >= 1  # the pairs did overlap


def test_a_rotation_killed_midway_and_resumed_ends_consistent(local_stack: LocalStack, sm: Any) -> None:
    import random
    import signal

    for delay in (random.uniform(0.5, 2.5), random.uniform(2.5, 5.0), random.uniform(1.0, 4.0)):
        proc = start_cli(local_stack, "orders-local", "ledger_batch")
        try:
            proc.wait(timeout=delay)
        except Exception:  # noqa: BLE001 - still running: kill it midway
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finished = run_cli(local_stack, "orders-local", "ledger_batch", "--resume")
        assert finished.returncode == 0, finished.stderr
        login(local_stack, value(sm, SINGLE)).close()


def test_client_retries_with_awspending_during_an_interrupted_rotation(local_stack: LocalStack, sm: Any,
                                                                       rotate: Callable[..., str]) -> None:
    from rdsvend import PasswordSource, connect_password

    source = PasswordSource(SINGLE, client=sm, ttl=3600)
    env = {"PGSSLROOTCERT": local_stack.ca_path}
    before = source.current()
    with connect_password(source, environ=env) as conn:  # nothing in flight: AWSCURRENT
        assert conn.info.password == before.password
    token = rotate(SINGLE, steps=("createSecret", "setSecret"))
    pending = value(sm, SINGLE, "AWSPENDING", token)
    assert "password authentication failed" in refused(local_stack, value(sm, SINGLE))
    with connect_password(source, environ=env) as conn:  # AWSCURRENT refused, AWSPENDING accepted
        assert conn.execute("SELECT current_user").fetchone() == ("ledger_batch",)
        assert conn.info.password == pending["password"]
    rotate(SINGLE)  # resumes and finishes
    # the source still caches the old AWSCURRENT for an hour: the retry covers that too
    assert source.current().password == before.password
    with connect_password(source, environ=env) as conn:
        assert conn.info.password == value(sm, SINGLE)["password"]
    assert source.current().password == value(sm, SINGLE)["password"]  # cache refreshed


def test_client_gives_up_after_one_retry_without_showing_a_password(local_stack: LocalStack, sm: Any) -> None:
    from rdsvend import PasswordSource, connect_password

    current = value(sm, SINGLE)
    with psycopg.connect(local_stack.admin_dsn, autocommit=True) as admin:
        admin.execute("ALTER ROLE ledger_batch PASSWORD 'neither-current-nor-pending-2'")
    try:
        with pytest.raises(psycopg.OperationalError) as info:
            connect_password(PasswordSource(SINGLE, client=sm), environ={"PGSSLROOTCERT": local_stack.ca_path})
    finally:
        with psycopg.connect(local_stack.admin_dsn, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("ALTER ROLE ledger_batch PASSWORD {}").format(
                psycopg.sql.Literal(current["password"])))
    assert 'password authentication failed for user "ledger_batch"' in str(info.value)
    assert current["password"] not in str(info.value) and current["password"] not in repr(info.value)


def test_a_secret_edited_after_a_rotation_rotates_again_and_logs_in(local_stack: LocalStack, sm: Any) -> None:
    # An operator rotates, then edits the secret (a new version through PutSecretValue, as the
    # console does), then rotates again: AWS keeps one AWSCURRENT through all of it, so the
    # second rotation starts from the edited version and its password logs in afterwards.
    first = run_cli(local_stack, "orders-local", "ledger_batch")
    assert first.returncode == 0, first.stderr
    edited = {**value(sm, SINGLE), "note": "edited by an operator"}
    sm.put_secret_value(SecretId=SINGLE, SecretString=json.dumps(edited))
    stages = sm.describe_secret(SecretId=SINGLE)["VersionIdsToStages"]
    assert sum("AWSCURRENT" in labels for labels in stages.values()) == 1
    assert value(sm, SINGLE)["note"] == "edited by an operator"
    second = run_cli(local_stack, "orders-local", "ledger_batch")
    assert second.returncode == 0, second.stderr
    rotated = value(sm, SINGLE)
    assert rotated["password"] != edited["password"]
    login(local_stack, rotated).close()
    assert "password authentication failed" in refused(local_stack, edited)
