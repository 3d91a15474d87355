"""The client side end to end on the local stack: the ``rdsvend`` commands as a person runs
them (subprocesses, SigV4 through the local gateway), libpq reading a pgpass file, psql,
TokenClient under concurrency, and an SQLAlchemy pool whose first token has expired.

Everything is real here: the gateway verifies SigV4 against moto's keys, the app vends, and
the RDS-shaped PostgreSQL checks each token as RDS would, over TLS ``verify-full``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import sqlalchemy
from botocore.config import Config

from devtools.local.stack import UNSET_ENV, LocalStack
from rdsvend import TokenClient, VendApi, VendedToken, connect
from rdsvend.pgpass import split_line
from rdsvend.sqla import create_engine
from tests.support.local_shell import interruptible

pytestmark = pytest.mark.e2e

DATABASE, DB_USER = "orders-local", "orders_app"
RDSVEND = [sys.executable, "-m", "rdsvend.cli"]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def stack_env(local_stack: LocalStack) -> dict[str, str]:
    """A shell's environment after ``eval "$(rdsvend local env)"`` for the allowed caller."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV and not k.startswith("PG")}
    env.update(local_stack.env("allowed"))
    return env


def rdsvend(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RDSVEND, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def session_for(local_stack: LocalStack, caller: str = "allowed") -> boto3.Session:
    keys = local_stack.env(caller)
    return boto3.Session(aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
                         region_name=keys["AWS_DEFAULT_REGION"])


def current_user(ca_path: str, **params: Any) -> str:
    with psycopg.connect(sslmode="verify-full", sslrootcert=ca_path, connect_timeout=10, **params) as conn:
        row = conn.execute("select current_user").fetchone()
    assert row is not None
    return str(row[0])


class CountingApi:
    """The real VendApi, counting the vend calls that reach the service."""

    def __init__(self, api: VendApi) -> None:
        self.api = api
        self.calls = 0
        self.lock = threading.Lock()

    def vend(self, database: str, db_user: str) -> VendedToken:
        with self.lock:
            self.calls += 1
        return self.api.vend(database, db_user)


class OffsetClock:
    """The real clock plus an offset the test moves: the client's idea of time only."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


# --------------------------------------------------------------------------- CLI


def test_token_formats_each_connect(local_stack: LocalStack, stack_env: dict[str, str]) -> None:
    ca = local_stack.ca_path
    result = rdsvend(stack_env, "token", DATABASE, DB_USER, "--format", "json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["db_user"] == DB_USER and body["rule"] == "orders-api"
    assert current_user(ca, host=body["host"], port=body["port"], dbname=body["dbname"], user=DB_USER,
                        password=body["token"]) == DB_USER

    token = rdsvend(stack_env, "token", DATABASE, DB_USER)
    assert token.returncode == 0 and token.stdout.count("\n") == 1
    assert current_user(ca, host=body["host"], port=body["port"], dbname=body["dbname"], user=DB_USER,
                        password=token.stdout.strip()) == DB_USER

    dsn = rdsvend(stack_env, "token", DATABASE, DB_USER, "--format", "dsn").stdout.strip()
    assert "sslmode=verify-full" in dsn and f"sslrootcert={ca}" in dsn
    with psycopg.connect(dsn, connect_timeout=10) as conn:  # password and CA are in the DSN
        assert conn.execute("select current_user").fetchone() == (DB_USER,)


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql not installed")
def test_token_env_format_feeds_psql(stack_env: dict[str, str]) -> None:
    script = f'eval "$({" ".join(RDSVEND)} token {DATABASE} {DB_USER} --format env)" && ' \
             'psql -Atc "select current_user, count(*) from shop.orders"'
    result = subprocess.run(["bash", "-c", script], env=stack_env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "orders_app|3"


def test_denied_caller_gets_one_line_and_exit_1(local_stack: LocalStack, stack_env: dict[str, str],
                                                tmp_path: Path) -> None:
    env = {**stack_env, **local_stack.env("denied")}
    marker = tmp_path / "ran"
    for args in (["token", DATABASE, DB_USER],
                 ["exec", DATABASE, DB_USER, "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"]):
        result = rdsvend(env, *args)
        assert result.returncode == 1, (args[0], result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith("rdsvend: error: forbidden:") and result.stderr.count("\n") == 1
    assert not marker.exists(), "exec ran the command although no token was vended"


def test_unsigned_environment_is_refused_by_the_gateway(stack_env: dict[str, str]) -> None:
    env = {**stack_env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    result = rdsvend(env, "token", DATABASE, DB_USER)
    assert result.returncode == 2  # the caller's credentials, not the service's policy
    assert result.stderr.startswith("rdsvend: error: bad_credentials: ") and result.stderr.count("\n") == 1
    assert "forbidden" not in result.stderr
    assert "not-the-secret" not in result.stderr and result.stdout == ""


def test_passexec_prints_only_a_working_token(local_stack: LocalStack, stack_env: dict[str, str]) -> None:
    result = rdsvend(stack_env, "passexec", DATABASE, DB_USER)
    assert result.returncode == 0, result.stderr
    token = result.stdout.rstrip("\n")
    assert "\n" not in token and token.startswith("localhost:") and result.stderr == ""
    db = local_stack.info.databases[DATABASE]
    assert current_user(local_stack.ca_path, host="localhost", port=int(db["port"]), dbname="orders",
                        user=DB_USER, password=token) == DB_USER


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql not installed")
def test_exec_runs_psql_with_the_libpq_environment(stack_env: dict[str, str]) -> None:
    result = rdsvend(stack_env, "exec", DATABASE, DB_USER, "--", "psql", "-Atc",
                     "select current_user, current_setting('ssl') = 'on', count(*) from shop.orders")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "orders_app|t|3"


def test_exec_returns_the_commands_exit_status(stack_env: dict[str, str]) -> None:
    result = rdsvend(stack_env, "exec", DATABASE, DB_USER, "--", "psql", "-Atc", "select * from no_such_table")
    assert result.returncode != 0 and "no_such_table" in result.stderr


def test_pgpass_file_is_read_by_libpq(local_stack: LocalStack, stack_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_text("# keep this comment\nother.example:5432:*:alice:pa\\:ss\n")
    result = rdsvend(stack_env, "pgpass", DATABASE, DB_USER, "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# keep this comment", "other.example:5432:*:alice:pa\\:ss"]
    host, port, dbname, user, token = split_line(lines[2])
    assert (dbname, user) == ("orders", DB_USER) and token.startswith(f"{host}:{port}/?Action=connect")
    # No password given: libpq finds it in the pgpass file (and must unescape the ':').
    assert current_user(local_stack.ca_path, host=host, port=int(port), dbname=dbname, user=user,
                        passfile=str(path)) == DB_USER
    # A second run replaces the line rather than adding one.
    assert rdsvend(stack_env, "pgpass", DATABASE, DB_USER, "--file", str(path)).returncode == 0
    assert len(path.read_text().splitlines()) == 3


def test_pgpass_watch_keeps_rewriting_the_file(local_stack: LocalStack, stack_env: dict[str, str],
                                               tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    proc = subprocess.Popen(interruptible("pgpass", DATABASE, DB_USER, "--file", str(path), "--watch", "--every", "1"),
                            env=stack_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    inodes: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while len(inodes) < 3 and time.monotonic() < deadline and proc.poll() is None:
            try:
                inodes.add(path.stat().st_ino)
            except FileNotFoundError:
                pass
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert len(inodes) >= 3, f"the watcher did not refresh the file: {stderr}"
    assert "Traceback" not in stderr
    host, port, dbname, user, _ = split_line(path.read_text().splitlines()[0])
    assert current_user(local_stack.ca_path, host=host, port=int(port), dbname=dbname, user=user,
                        passfile=str(path)) == DB_USER


# --------------------------------------------------------------------------- TokenClient


def test_concurrent_token_client_callers_cause_one_refresh(local_stack: LocalStack) -> None:
    clock = OffsetClock()
    api = CountingApi(VendApi(local_stack.url, session=session_for(local_stack), clock=clock))
    client = TokenClient(api=api, clock=clock)
    tokens: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def worker() -> None:
        barrier.wait()
        try:
            tokens.append(client.token(DATABASE, DB_USER))
        except BaseException as exc:  # noqa: BLE001 - a worker thread's failure, whatever it is, is reported below  # pragma: no cover
            errors.append(exc)

    def wave() -> None:
        threads = [threading.Thread(target=worker) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    wave()
    assert not errors and len(tokens) == 12 and len(set(tokens)) == 1
    assert api.calls == 1
    # The client's clock passes 80 % of the token's life: one refresh for all twelve callers.
    clock.offset += 0.81 * client.get(DATABASE, DB_USER).ttl_seconds
    tokens.clear()
    wave()
    assert not errors and len(tokens) == 12
    assert api.calls == 2
    with connect(client, DATABASE, DB_USER, sslrootcert=local_stack.ca_path) as conn:
        assert conn.execute("select current_user").fetchone() == (DB_USER,)


def test_sqlalchemy_pool_asks_for_a_new_token_once_the_first_expired(local_stack: LocalStack) -> None:
    """Expiry on the client's clock: the service's tokens live ~14 minutes of real time, so
    the test moves the TokenClient's clock 15 minutes ahead. The pool must then ask for a new
    token for its next connection instead of reusing the one it started with, and that
    connection must log in to the real PostgreSQL. (The next test makes a token that really
    stopped working.)"""
    clock = OffsetClock()
    api = CountingApi(VendApi(local_stack.url, session=session_for(local_stack), clock=clock))
    client = TokenClient(api=api, clock=clock)
    engine = create_engine(client, DATABASE, DB_USER, pool_size=1, max_overflow=0,
                           connect_args={"sslrootcert": local_stack.ca_path})
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select current_user").scalar() == DB_USER
        first = client.get(DATABASE, DB_USER)
        assert api.calls == 1
        clock.offset += first.ttl_seconds + 60  # the first token is past its expiry
        engine.dispose()  # the pool must open a new connection
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select count(*) from shop.orders").scalar() == 3
        assert api.calls == 2
    finally:
        engine.dispose()


def test_sqlalchemy_pool_survives_a_token_that_really_expired(local_stack: LocalStack) -> None:
    """Real expiry, no clock tricks: tokens here are signed by the test with STS session
    credentials of the stack's signer role that live 4 seconds (moto honours any
    DurationSeconds; the stack's RDS token checker refuses a token whose session credentials
    have expired, as RDS does). Once they expire, PostgreSQL refuses the first token: a pool
    that froze it in its creator cannot open a connection, the hooked pool can."""
    db = local_stack.info.databases[DATABASE]
    host, port, ttl = "localhost", int(db["port"]), 4
    # The signer trusts the service's function role (the local STS enforces trust policies).
    sts = local_stack.info.seeded.function("vend").session(local_stack.info.region).client(
        "sts", endpoint_url=local_stack.moto_url, config=Config(parameter_validation=False))
    signer_role = local_stack.info.seeded.signer_role_arn

    class ShortLivedSigner:
        calls = 0

        def vend(self, database: str, db_user: str) -> VendedToken:
            ShortLivedSigner.calls += 1
            creds = sts.assume_role(RoleArn=signer_role, RoleSessionName=f"e2e-short-{self.calls}",
                                    DurationSeconds=ttl)["Credentials"]
            token = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                  aws_secret_access_key=creds["SecretAccessKey"],
                                  aws_session_token=creds["SessionToken"], region_name="us-east-1") \
                .client("rds").generate_db_auth_token(DBHostname=host, Port=port, DBUsername=db_user,
                                                      Region="us-east-1")
            return VendedToken(token=token, expires_at=creds["Expiration"], ttl_seconds=ttl, database=database,
                               db_user=db_user, engine="postgres", host=host, port=port, dbname="orders",
                               region="us-east-1", sslmode="verify-full", ssl_root_cert="",
                               dsn="", rule=None, received_at=time.monotonic())

    client = TokenClient(api=ShortLivedSigner(), min_valid_seconds=0.5)
    hooked = create_engine(client, DATABASE, DB_USER, connect_args={"sslrootcert": local_stack.ca_path})
    first_token = client.token(DATABASE, DB_USER)
    frozen = sqlalchemy.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(
        host=host, port=port, dbname="orders", user=DB_USER, password=first_token, sslmode="verify-full",
        sslrootcert=local_stack.ca_path, connect_timeout=10))
    try:
        for engine in (hooked, frozen):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("select current_user").scalar() == DB_USER
            engine.dispose()
        time.sleep(ttl + 1.5)  # the first token's credentials expire for real
        with pytest.raises(sqlalchemy.exc.OperationalError):
            with frozen.connect():
                pass
        with hooked.connect() as conn:
            assert conn.exec_driver_sql("select current_user").scalar() == DB_USER
        assert ShortLivedSigner.calls == 2
    finally:
        hooked.dispose()
        frozen.dispose()
