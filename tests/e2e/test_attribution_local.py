"""Attribution on the local stack: refused IAM logins as RDS reports them, in the database's account.

Each refusal goes through the real path (PostgreSQL -> LDAP responder -> token checker, or the
responder directly for the burst), and the test reads what the stack wrote to the local AWS's
CloudWatch Logs (``/aws/rds/instance/orders-local/iam-db-auth-error``) and CloudWatch metrics
(``AWS/RDS``, ``DBInstanceIdentifier``) in account 222222222222, where the database lives.
Every change to the world is undone by the test that made it.
"""
from __future__ import annotations

import contextlib
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import psycopg
import pytest
from botocore.config import Config

from chalicelib.canary.model import CheckResult
from devtools.local.aws import AccountSessions
from devtools.local.stack import LocalStack
from devtools.local.state import AUDIT_LOG_GROUP
from tests.support.canary_samples import check_of

pytestmark = pytest.mark.e2e

DB = "orders-local"
APP_USER = "orders_app"
GROUP = f"/aws/rds/instance/{DB}/iam-db-auth-error"
SIGNER_POLICY = "rdsvend-signer-rds-connect"


class World:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        info = stack.info
        self.info = info
        self.db = info.databases[DB]
        self.account = self.db["account"]
        self.sessions = AccountSessions(info.moto_url, info.region, info.seeded.management_account)
        self.logs = self.sessions.client("logs", self.account)
        self.cw = self.sessions.client("cloudwatch", self.account)
        self.rds = self.sessions.client("rds", self.account)
        self.iam = self.sessions.client("iam", info.seeded.instances[DB].account)

    # -- making logins ---------------------------------------------------------------------------
    def connect(self, token: str, user: str = APP_USER) -> psycopg.Connection[Any]:
        return psycopg.connect(host=self.db["host"], port=self.db["port"], dbname=self.db["dbname"], user=user,
                               password=token, sslmode="verify-full", sslrootcert=self.stack.ca_path,
                               connect_timeout=10)

    def refused(self, token: str, user: str = APP_USER) -> None:
        with pytest.raises(psycopg.OperationalError) as err:
            self.connect(token, user).close()
        assert "authentication failed" in str(err.value).lower()

    def caller_token(self, at: datetime | None = None, caller: str = "allowed") -> str:
        keys = self.stack.keys(caller)
        session = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                        aws_secret_access_key=keys.secret_access_key, region_name=self.info.region)
        rds = session.client("rds", endpoint_url=self.info.moto_url)
        kwargs = dict(DBHostname=self.db["host"], Port=self.db["port"], DBUsername=APP_USER, Region=self.info.region)
        if at is None:
            return str(rds.generate_db_auth_token(**kwargs))
        with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
            return str(rds.generate_db_auth_token(**kwargs))

    def vend(self) -> str:
        status, body = self.stack.request("POST", "/v1/tokens", {"database": DB, "db_user": APP_USER})
        assert status == 200, body
        token: str = body["token"]
        return token

    # -- reading what RDS wrote --------------------------------------------------------------------
    def lines_since(self, start_ms: int) -> list[str]:
        try:
            events = self.logs.filter_log_events(logGroupName=GROUP, startTime=start_ms)["events"]
        except self.logs.exceptions.ResourceNotFoundException:
            return []
        return [e["message"] for e in events]

    def wait_for_line(self, start_ms: int, needle: str, timeout: float = 15.0, count: int = 1) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.lines_since(start_ms) if needle in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.2)

    def metric(self, name: str, start: datetime) -> float:
        answer = self.cw.get_metric_statistics(
            Namespace="AWS/RDS", MetricName=name, Dimensions=[{"Name": "DBInstanceIdentifier", "Value": DB}],
            StartTime=start - timedelta(minutes=1), EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=60, Statistics=["Sum"])
        return float(sum(p["Sum"] for p in answer["Datapoints"]))

    def wait_for_metric(self, name: str, start: datetime, at_least: float, timeout: float = 15.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, start)
            if value >= at_least or time.monotonic() > deadline:
                return value
            time.sleep(0.2)


@pytest.fixture(scope="module")
def world(local_stack: LocalStack) -> World:
    return World(local_stack)  # the refusals made here are cleared when the module ends (conftest)


def _now() -> tuple[datetime, int]:
    return datetime.now(UTC), int(time.time() * 1000) - 1000


def test_an_expired_token_is_logged_as_expired_with_its_metric(world: World) -> None:
    start, start_ms = _now()
    before = world.metric("IamDbAuthConnectionFailureInvalidToken", start)
    world.refused(world.caller_token(at=datetime.now(UTC) - timedelta(minutes=20)))
    lines = world.wait_for_line(start_ms, "Error Code: ExpiredToken")
    assert lines == [f"[ERROR] Failed to authenticate the connection request for user {APP_USER} because the token "
                     "age is longer than 15 minutes. (Status Code: 400, Error Code: ExpiredToken)"]
    assert world.wait_for_metric("IamDbAuthConnectionFailureInvalidToken", start, before + 1) >= before + 1
    assert world.metric("IamDbAuthConnectionFailure", start) >= 1
    assert world.metric("IamDbAuthConnectionRequests", start) >= 1


def test_a_tampered_token_is_logged_as_invalid_and_never_written_out(world: World) -> None:
    start, start_ms = _now()
    token = world.caller_token()
    head, sig = token.rsplit("X-Amz-Signature=", 1)
    tampered = f"{head}X-Amz-Signature={'0' if sig[0] != '0' else '1'}{sig[1:]}"
    world.refused(tampered)
    lines = world.wait_for_line(start_ms, "Error Code: InvalidToken")
    assert any(f"for user {APP_USER} because the provided token is malformed or otherwise invalid" in line
               for line in lines)
    assert world.wait_for_metric("IamDbAuthConnectionFailureInvalidToken", start, 1) >= 1
    everything = "\n".join(world.lines_since(start_ms))
    assert sig[8:40] not in everything and "X-Amz-Signature" not in everything
    from pathlib import Path

    stack_log = (Path(world.info.state_dir) / "stack.log").read_text()
    assert "reason=signature:bad_signature" in stack_log and sig[8:40] not in stack_log


@contextlib.contextmanager
def signer_without_permission(world: World) -> Iterator[None]:
    role = "rdsvend-signer"
    arn = next(p["PolicyArn"] for p in world.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
               if p["PolicyName"] == SIGNER_POLICY)
    world.iam.detach_role_policy(RoleName=role, PolicyArn=arn)
    try:
        yield
    finally:
        world.iam.attach_role_policy(RoleName=role, PolicyArn=arn)


def test_an_unpermitted_signer_is_logged_as_not_authorized_naming_the_caller(world: World) -> None:
    start, start_ms = _now()
    token = world.vend()  # signed by the signer role, in a session named after the caller
    with signer_without_permission(world):
        world.refused(token)
    lines = world.wait_for_line(start_ms, "Error Code: NotAuthorized")
    caller = f"arn:aws:sts::{world.account}:assumed-role/rdsvend-signer/user.orders-api@333333333333"
    assert lines == [f"[ERROR] Failed to authorize the connection request for user {APP_USER} because the IAM "
                     f"policy assumed by the caller '{caller}' is not authorized to perform rds-db:connect on the "
                     "DB instance. (Status Code: 403, Error Code: NotAuthorized)"]
    assert world.wait_for_metric("IamDbAuthConnectionFailureInsufficientPermissions", start, 1) >= 1
    world.connect(token).close()  # permission back: the same token logs in


def _tlv(tag: int, payload: bytes) -> bytes:
    if len(payload) < 0x80:
        return bytes([tag, len(payload)]) + payload
    size = len(payload).to_bytes((len(payload).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + payload


def _bind(message_id: int, user: str, token: str) -> bytes:
    request = _tlv(0x02, b"\x03") + _tlv(0x04, f"cn={user},dc=rdsvend".encode()) + _tlv(0x80, token.encode())
    mid = message_id.to_bytes(2, "big")
    return _tlv(0x30, _tlv(0x02, mid) + _tlv(0x60, request))


def _codes(reply: bytes) -> list[int]:
    codes, index = [], reply.find(b"\x0a\x01")
    while index != -1:
        codes.append(reply[index + 2])
        index = reply.find(b"\x0a\x01", index + 3)
    return codes


def test_a_burst_past_the_instance_rate_is_throttled_and_logged(world: World) -> None:
    """300 logins in well under a second (pipelined on the bind responder PostgreSQL hands
    passwords to: PostgreSQL itself cannot start 200 TLS sessions a second on this machine)."""
    start, start_ms = _now()
    token = world.vend()
    binds = b"".join(_bind(i + 1, APP_USER, token) for i in range(150))
    replies = []
    socks = [socket.create_connection(("127.0.0.1", world.info.ldap_port), timeout=10) for _ in range(2)]
    began = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(binds + _tlv(0x30, b"\x02\x01\x7f\x42\x00"))
        for sock in socks:
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            replies.append(b"".join(chunks))
    finally:
        for sock in socks:
            sock.close()
    elapsed = time.monotonic() - began
    codes = [c for reply in replies for c in _codes(reply)]
    assert len(codes) == 300
    # at most 200 new logins in any second (a loaded machine may take longer than one for the burst)
    assert codes.count(49) >= 1 and codes.count(0) <= 200 * max(1, math.ceil(elapsed))
    lines = world.wait_for_line(start_ms, "Error Code: ThrottlingException", count=codes.count(49))
    assert lines[0] == (f"[ERROR] Failed to authorize the connection request for user {APP_USER} due to IAM DB "
                        "authentication throttling. (Status Code: 429, Error Code: ThrottlingException)")
    assert len(lines) == codes.count(49)
    assert world.wait_for_metric("IamDbAuthConnectionFailureThrottling", start, len(lines)) == len(lines)
    time.sleep(1.1)  # the next test starts with a fresh second
    world.connect(token).close()


def test_a_valid_token_is_refused_while_iam_auth_is_disabled(world: World) -> None:
    token = world.vend()
    world.rds.modify_db_instance(DBInstanceIdentifier=DB, EnableIAMDatabaseAuthentication=False, ApplyImmediately=True)
    try:
        world.refused(token)
    finally:
        world.rds.modify_db_instance(DBInstanceIdentifier=DB, EnableIAMDatabaseAuthentication=True,
                                     ApplyImmediately=True)
    with world.connect(token) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)


def test_the_service_audit_lines_reach_its_log_group_without_the_token(world: World) -> None:
    start_ms = int(time.time() * 1000) - 1000
    token = world.vend()
    logs = world.sessions.client("logs", world.info.seeded.execution.account)
    deadline = time.monotonic() + 15
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        try:
            events = logs.filter_log_events(logGroupName="/aws/lambda/rdsvend-local", startTime=start_ms)["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        found = [json.loads(e["message"]) for e in events if '"decision":"allow"' in e["message"]]
        time.sleep(0.2)
    assert found and found[-1]["principal"] == "arn:aws:iam::333333333333:user/orders-api"
    assert found[-1]["database"] == DB and found[-1]["db_user"] == APP_USER and found[-1]["rule"] == "orders-api"
    assert all(token.split("X-Amz-Signature=")[1] not in json.dumps(f) for f in found)


def _operator_env(world: World) -> dict[str, str]:
    """The operator's shell in the service account (where the audit lines and orders-local live)."""
    import os

    keys = world.info.keys("operator")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RDSVEND_"))}
    env.update({"AWS_ENDPOINT_URL": world.info.moto_url, "AWS_DEFAULT_REGION": world.info.region,
                "RDSVEND_POLICY": world.info.policy_path, "RDSVEND_AUDIT_LOG_GROUPS": AUDIT_LOG_GROUP, **keys.env()})
    return env


def _rdsvend(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdsvend.cli", *args], env=_operator_env(world),
                          capture_output=True, text=True, timeout=120, check=False)


def test_audit_json_joins_the_refusal_to_the_vend_by_session(world: World) -> None:
    token = world.vend()
    with signer_without_permission(world):
        world.refused(token)
    world.wait_for_line(int(time.time() * 1000) - 5000, "Error Code: NotAuthorized")
    time.sleep(0.5)  # the audit tee's batch
    done = _rdsvend(world, "audit", "--json", "--database", DB, "--db-user", APP_USER, "--since", "10m")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)["entries"]
    refusal = [e for e in entries if e["kind"] == "refusal" and e["error_code"] == "NotAuthorized"][-1]
    assert refusal["session"] == "user.orders-api@333333333333" and refusal["match"] == "session"
    assert refusal["vend"]["principal"] == "arn:aws:iam::333333333333:user/orders-api"
    assert refusal["vend"]["rule"] == "orders-api"
    vend = next(e for e in entries if e["kind"] == "vend" and e["request_id"] == refusal["vend"]["request_id"])
    assert vend["decision"] == "allow" and vend["expires_at"]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)  # newest last
    assert token.split("X-Amz-Signature=")[1] not in done.stdout


@pytest.mark.parametrize("args", [["--since", "soon"], ["--since", "0m"], ["--bogus"], ["--database", "nope"]])
def test_audit_bad_flags_are_one_line_and_exit_2(world: World, args: list[str]) -> None:
    done = _rdsvend(world, "audit", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_doctor_names_the_refused_caller_with_reason_and_fix(world: World) -> None:
    world.refused(world.caller_token(at=datetime.now(UTC) - timedelta(minutes=20)))
    token = world.vend()
    with signer_without_permission(world):
        world.refused(token)
    world.wait_for_line(int(time.time() * 1000) - 5000, "Error Code: NotAuthorized")
    time.sleep(0.5)
    done = _rdsvend(world, "doctor", DB, APP_USER)
    out = done.stdout
    assert "Refused IAM logins for orders_app in the last hour" in out, out + done.stderr
    assert "arn:aws:iam::333333333333:user/orders-api: " in out
    assert "NotAuthorized: the signer may not rds-db:connect as this database user" in out
    assert "x ExpiredToken: the token was used more than 15 minutes after it was signed" in out
    assert "refresh tokens earlier" in out and "use the rdsvend client" in out


def test_doctor_says_how_to_turn_the_export_on(world: World) -> None:
    world.rds.modify_db_instance(DBInstanceIdentifier=DB, ApplyImmediately=True,
                                 CloudwatchLogsExportConfiguration={"DisableLogTypes": ["iam-db-auth-error"]})
    try:
        done = _rdsvend(world, "doctor", DB, APP_USER)
    finally:
        world.rds.modify_db_instance(DBInstanceIdentifier=DB, ApplyImmediately=True,
                                     CloudwatchLogsExportConfiguration={"EnableLogTypes": ["iam-db-auth-error"]})
    assert "does not export its iam-db-auth-error log" in done.stdout
    assert (f"aws rds modify-db-instance --db-instance-identifier {DB} --cloudwatch-logs-export-configuration "
            "'{\"EnableLogTypes\":[\"iam-db-auth-error\"]}'") in done.stdout


def test_the_canary_warns_after_a_refusal_and_passes_when_there_is_none(world: World) -> None:
    from chalicelib.canary.checks_auth_log import CloudWatchAuthErrorLog
    from chalicelib.canary.runner import run_canary
    from chalicelib.policy.loader import load_policy_file
    from devtools.local.canary import local_canary_deps

    policy = load_policy_file(world.info.policy_path)
    target = [(policy.databases[DB], policy.databases[DB].users[APP_USER])]

    def auth_errors(since: float) -> CheckResult:
        deps = local_canary_deps(world.info, policy)
        assert isinstance(deps.auth_log, CloudWatchAuthErrorLog)
        deps.auth_log = CloudWatchAuthErrorLog(deps.auth_log.client_for, since=since)
        report = run_canary(policy, deps, targets=target)
        return check_of(report.targets[0], "rds.auth_errors")

    quiet_since = time.time()
    assert auth_errors(quiet_since).status == "pass"
    world.refused(world.caller_token(at=datetime.now(UTC) - timedelta(minutes=20)))
    world.wait_for_line(int(quiet_since * 1000), "Error Code: ExpiredToken")
    warned = auth_errors(quiet_since)
    assert warned.status == "warn" and "1 x ExpiredToken" in warned.message and APP_USER in warned.message
    assert "refresh tokens earlier" in warned.fix
    assert auth_errors(time.time()).status == "pass"  # nothing since this run's previous one


def test_the_canary_errors_when_it_cannot_read_the_log(world: World) -> None:
    from chalicelib.canary.checks_auth_log import CloudWatchAuthErrorLog
    from chalicelib.canary.runner import run_canary
    from chalicelib.policy.loader import load_policy_file
    from devtools.local.canary import local_canary_deps

    policy = load_policy_file(world.info.policy_path)
    deps = local_canary_deps(world.info, policy)
    dead = boto3.session.Session(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x",
                                 region_name=world.info.region).client(
        "logs", endpoint_url="http://127.0.0.1:9", config=Config(
            connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}))
    deps.auth_log = CloudWatchAuthErrorLog(lambda database: dead, since=time.time() - 60)
    report = run_canary(policy, deps, targets=[(policy.databases[DB], policy.databases[DB].users[APP_USER])])
    check = check_of(report.targets[0], "rds.auth_errors")
    assert check.status == "error" and "FilterLogEvents" in check.message


def test_a_refusal_in_another_account_is_read_there_through_the_reader_role(world: World) -> None:
    """billing-local lives in account 444444444444: its refusals are written there, and the
    operator (in the service account) reads them through the database's reader role."""
    billing = world.info.databases["billing-local"]
    iam = world.sessions.client("iam", billing["account"])
    status, body = world.stack.request("POST", "/v1/tokens", {"database": "billing-local", "db_user": "billing_app"})
    assert status == 200, body
    arn = next(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="rdsvend-signer")["AttachedPolicies"]
               if p["PolicyName"].endswith("rds-connect"))
    start_ms = int(time.time() * 1000) - 1000
    iam.detach_role_policy(RoleName="rdsvend-signer", PolicyArn=arn)
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host=billing["host"], port=billing["port"], dbname=billing["dbname"], user="billing_app",
                            password=body["token"], sslmode="verify-full", sslrootcert=world.stack.ca_path,
                            connect_timeout=10).close()
    finally:
        iam.attach_role_policy(RoleName="rdsvend-signer", PolicyArn=arn)
    logs = world.sessions.client("logs", billing["account"])
    deadline = time.monotonic() + 15
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        events = logs.filter_log_events(logGroupName="/aws/rds/instance/billing-local/iam-db-auth-error",
                                        startTime=start_ms)["events"]
        lines = [e["message"] for e in events if "NotAuthorized" in e["message"]]
        time.sleep(0.2)
    assert lines and "arn:aws:sts::444444444444:assumed-role/rdsvend-signer/user.orders-api@333333333333" in lines[0]
    assert not world.lines_since(start_ms)  # nothing in orders-local's log, in the service account
    time.sleep(0.5)
    env = {k: v for k, v in _operator_env(world).items() if not k.startswith("AWS_")}
    env.update({**world.info.env("operator"), "RDSVEND_POLICY": world.info.policy_path})  # rdsvend local env --as operator
    done = subprocess.run([sys.executable, "-m", "rdsvend.cli", "audit", "--json", "--database", "billing-local",
                           "--since", "10m"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    refusal = [e for e in json.loads(done.stdout)["entries"] if e["kind"] == "refusal"][-1]
    assert refusal["error_code"] == "NotAuthorized" and refusal["match"] == "session"
    assert refusal["vend"]["rule"] == "billing-api"
