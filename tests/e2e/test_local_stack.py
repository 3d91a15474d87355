"""End to end through the whole local stack: gateway -> Chalice app -> moto -> PostgreSQL.

Every request is a real SigV4-signed HTTP call, every token is checked by the local
PostgreSQL's LDAP responder against moto's live keys, IAM policies and SCPs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import psycopg
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devtools.local.aws import AccountSessions
from devtools.local.postgres import BACKEND_HOST
from devtools.local.sessions import Keys
from devtools.local.stack import LocalStack, listening_sockets, read_state

pytestmark = pytest.mark.e2e

DB = "orders-local"
APP_USER = "orders_app"
REPO = Path(__file__).resolve().parents[2]


# -- helpers --------------------------------------------------------------------------------------

def _db(stack: LocalStack) -> Mapping[str, Any]:
    return stack.info.databases[DB]


def _connect(stack: LocalStack, user: str, password: str, host: str | None = None) -> psycopg.Connection[Any]:
    db = _db(stack)
    return psycopg.connect(host=host or db["host"], port=db["port"], dbname=db["dbname"], user=user,
                           password=password, sslmode="verify-full", sslrootcert=stack.ca_path, connect_timeout=10)


def _refused(stack: LocalStack, user: str, token: str, reason: str | None = None) -> psycopg.OperationalError:
    """PostgreSQL refuses the login; with ``reason``, the token checker logged that reason."""
    with pytest.raises(psycopg.OperationalError) as err:
        _connect(stack, user, token).close()
    assert "authentication failed" in str(err.value).lower()
    if reason is not None:
        assert _last_refusal(stack).startswith(reason)
    return err.value


def _last_refusal(stack: LocalStack) -> str:
    lines = [line for line in (Path(stack.info.state_dir) / "stack.log").read_text().splitlines()
             if "rds token login refused" in line]
    assert lines, "the token checker logged no refusal"
    return lines[-1].split(" reason=", 1)[1]


def _session(stack: LocalStack, keys: Keys) -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
                                 aws_session_token=keys.session_token, region_name=stack.info.region)


def _token(stack: LocalStack, creds: boto3.session.Session, user: str = APP_USER, host: str | None = None,
           port: int | None = None, at: datetime | None = None) -> str:
    """A token made by botocore's own generate_db_auth_token (optionally signed at ``at``)."""
    db = _db(stack)
    rds = creds.client("rds", endpoint_url=stack.moto_url)
    kwargs = dict(DBHostname=host or db["host"], Port=port or db["port"], DBUsername=user,
                  Region=stack.info.region)
    if at is None:
        return str(rds.generate_db_auth_token(**kwargs))
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        return str(rds.generate_db_auth_token(**kwargs))


def _management(stack: LocalStack, service: str) -> Any:
    """A client acting as the management account's root (the local AWS authorizes every call)."""
    account = stack.info.seeded.management_account
    return AccountSessions(stack.moto_url, stack.info.region, account).client(service, account)


def _signed(stack: LocalStack, method: str, path: str, body: object = None, *, keys: Keys | None = None,
            secret: str | None = None, at: datetime | None = None,
            tamper: Callable[[Any], Any] | None = None) -> requests.Response:
    keys = keys or stack.keys("allowed")
    data = None if body is None else json.dumps(body).encode()
    request = AWSRequest(method=method, url=stack.url + path, data=data,
                         headers={"Content-Type": "application/json"} if data else {})
    creds = Credentials(keys.access_key_id, secret or keys.secret_access_key, keys.session_token)
    if at is None:
        SigV4Auth(creds, "execute-api", stack.info.region).add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
            SigV4Auth(creds, "execute-api", stack.info.region).add_auth(request)
    prepared = request.prepare()
    payload = prepared.body if tamper is None else tamper(prepared.body)
    return requests.request(method, prepared.url, headers=dict(prepared.headers), data=payload, timeout=10)


@pytest.fixture(scope="module")
def signer(local_stack: LocalStack) -> boto3.session.Session:
    """The signer role's session, assumed by the service's execution role, as the app does."""
    sts = _session(local_stack, local_stack.info.seeded.execution).client("sts", endpoint_url=local_stack.moto_url)
    creds = sts.assume_role(RoleArn=local_stack.info.seeded.signer_role_arn, RoleSessionName="e2e")["Credentials"]
    return boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["SessionToken"], region_name=local_stack.info.region)


# -- the API, through the gateway -----------------------------------------------------------------

def test_vend_then_connect_over_verify_full(local_stack: LocalStack) -> None:
    response = _signed(local_stack, "POST", "/v1/tokens", {"database": DB, "db_user": APP_USER})
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["rule"] == "orders-api"
    assert (body["host"], body["port"]) == (_db(local_stack)["host"], _db(local_stack)["port"])
    assert body["token"] not in body["dsn"]
    assert 0 < body["ttl_seconds"] <= 900
    with _connect(local_stack, APP_USER, body["token"]) as conn:
        assert conn.pgconn.ssl_in_use
        row = conn.execute("SELECT current_user, count(*) FROM shop.orders").fetchone()
    assert row == (APP_USER, 3)


def test_whoami_is_the_identity_the_signature_proves(local_stack: LocalStack) -> None:
    me = _signed(local_stack, "GET", "/v1/whoami").json()
    assert me == {"principal": "arn:aws:iam::333333333333:user/orders-api",
                  "arn": "arn:aws:iam::333333333333:user/orders-api", "account": "333333333333",
                  "org_id": "o-rdsvend001", "session": None}
    # session credentials sign too (their token is part of the signature)
    execution = local_stack.info.seeded.execution
    me = _signed(local_stack, "GET", "/v1/whoami", keys=execution).json()
    assert me["principal"] == "arn:aws:iam::222222222222:role/rdsvend-function"
    assert me["arn"] == execution.arn
    assert me["session"] == "rdsvend-local-function"


def test_databases_lists_only_what_the_caller_may_use(local_stack: LocalStack) -> None:
    allowed = _signed(local_stack, "GET", "/v1/databases").json()["databases"]
    # the owners are listed too: the caller may ask for them, under a just-in-time grant
    assert [(d["database"], d["db_users"]) for d in allowed] == [
        (DB, [APP_USER, "orders_owner"]), ("billing-local", ["billing_app"]), ("shop-local", ["shop_app", "shop_owner"]),
        ("orders-proxy", ["orders_app"]), ("shop-proxy", ["shop_app"]), ("ledger-local", ["ledger_app"])]
    denied = _signed(local_stack, "GET", "/v1/databases", keys=local_stack.keys("denied")).json()
    assert denied == {"databases": []}


def test_a_caller_no_rule_allows_gets_403(local_stack: LocalStack) -> None:
    response = _signed(local_stack, "POST", "/v1/tokens", {"database": DB, "db_user": APP_USER},
                       keys=local_stack.keys("denied"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "token" not in response.json()


def test_unsigned_requests_are_refused_like_api_gateway(local_stack: LocalStack) -> None:
    for method, path in (("GET", "/v1/whoami"), ("POST", "/v1/tokens"), ("GET", "/no/such/route")):
        response = requests.request(method, local_stack.url + path, timeout=10)
        assert response.status_code == 403
        assert response.json() == {"message": "Missing Authentication Token"}


def test_badly_signed_requests_are_refused(local_stack: LocalStack) -> None:
    keys = local_stack.keys("allowed")
    wrong_secret = _signed(local_stack, "GET", "/v1/whoami", secret="x" * 40)
    assert wrong_secret.status_code == 403
    assert wrong_secret.json()["message"].startswith("The request signature we calculated does not match")

    tampered = _signed(local_stack, "POST", "/v1/tokens", {"database": DB, "db_user": APP_USER},
                       tamper=lambda b: b.replace(b"orders_app", b"orders_own"))
    assert tampered.status_code == 403
    assert tampered.json()["message"].startswith("The request signature we calculated does not match")

    stale = _signed(local_stack, "GET", "/v1/whoami", at=datetime.now(UTC) - timedelta(minutes=10))
    assert stale.status_code == 403
    assert stale.json()["message"].startswith("Signature expired")

    unknown = _signed(local_stack, "GET", "/v1/whoami", keys=type(keys)("AKIAE2EUNKNOWN000000", "y" * 40, "", ""))
    assert unknown.status_code == 403
    assert unknown.json() == {"message": "The security token included in the request is invalid."}

    for response in (wrong_secret, tampered, stale, unknown):
        assert keys.secret_access_key not in response.text
        assert "Signature=" not in response.text


# -- tokens, refused by PostgreSQL ----------------------------------------------------------------

def test_a_token_the_signer_makes_is_accepted(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    with _connect(local_stack, APP_USER, _token(local_stack, signer)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)


def test_a_tampered_token_is_refused(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    token = _token(local_stack, signer)
    head, _, signature = token.rpartition("X-Amz-Signature=")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    _refused(local_stack, APP_USER, f"{head}X-Amz-Signature={flipped}", "signature:bad_signature")
    _refused(local_stack, APP_USER, token.replace("DBUser=orders_app", "DBUser=orders_app&x=1"),
             "signature:bad_signature")


def test_an_expired_token_is_refused(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    token = _token(local_stack, signer, at=datetime.now(UTC) - timedelta(seconds=960))
    _refused(local_stack, APP_USER, token, "signature:expired")


def test_a_token_for_another_user_is_refused(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    _refused(local_stack, APP_USER, _token(local_stack, signer, user="orders_owner"), "wrong_user")


def test_a_token_for_another_host_or_port_is_refused(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    db = _db(local_stack)
    _refused(local_stack, APP_USER, _token(local_stack, signer, host="orders-local.aaaaaaaaaa.us-east-1.rds.amazonaws.com"),
             "wrong_host")
    _refused(local_stack, APP_USER, _token(local_stack, signer, port=db["port"] + 1), "wrong_host")


def test_tokens_from_principals_without_rds_db_connect_are_refused(local_stack: LocalStack) -> None:
    denied_user = _session(local_stack, local_stack.keys("denied"))
    # RDS has no cross-account IAM authentication: a key from the callers' account never logs in
    _refused(local_stack, APP_USER, _token(local_stack, denied_user), "wrong_account")
    # the service's own role is in the right account, but no policy allows it rds-db:connect
    execution_role = _session(local_stack, local_stack.info.seeded.execution)
    _refused(local_stack, APP_USER, _token(local_stack, execution_role), "not_permitted:")


def test_an_scp_denying_rds_db_connect_takes_effect_at_once(local_stack: LocalStack,
                                                            signer: boto3.session.Session) -> None:
    orgs = _management(local_stack, "organizations")
    ou = local_stack.info.seeded.units["Services"]
    policy_id = orgs.create_policy(
        Name="E2EDenyRdsConnect", Description="e2e", Type="SERVICE_CONTROL_POLICY",
        Content=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": "rds-db:connect", "Resource": "*"}]}),
    )["Policy"]["PolicySummary"]["Id"]
    try:
        orgs.attach_policy(PolicyId=policy_id, TargetId=ou)
        _refused(local_stack, APP_USER, _token(local_stack, signer), "not_permitted:")
        assert "E2EDenyRdsConnect" in _last_refusal(local_stack)
    finally:
        orgs.detach_policy(PolicyId=policy_id, TargetId=ou)
        orgs.delete_policy(PolicyId=policy_id)
    with _connect(local_stack, APP_USER, _token(local_stack, signer)):
        pass


def test_kerberos_users_cannot_log_in_with_a_token(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    _refused(local_stack, "etl_legacy", _token(local_stack, signer, user="etl_legacy"))


# -- what the stack exposes -----------------------------------------------------------------------

def test_the_stack_binds_nothing_but_loopback(local_stack: LocalStack) -> None:
    sockets = listening_sockets(local_stack.pids())
    ports = {port for _addr, port, _pid in sockets}
    assert set(local_stack.info.ports()) <= ports
    # everything on 127.0.0.1; each PostgreSQL server behind its front on 127.0.54.32
    assert {addr for addr, _port, _pid in sockets} == {"127.0.0.1", BACKEND_HOST}


def test_no_secret_reaches_the_stack_log(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    response = _signed(local_stack, "POST", "/v1/tokens", {"database": DB, "db_user": APP_USER})
    token = response.json()["token"]
    with _connect(local_stack, APP_USER, token):
        pass
    _refused(local_stack, APP_USER, token[:-2] + "00")
    time.sleep(0.2)
    text = (Path(local_stack.info.state_dir) / "stack.log").read_text()
    assert "vend decision" in text  # the log is the one we think it is
    signature = token.rpartition("X-Amz-Signature=")[2]
    for secret in (token, signature, local_stack.keys("allowed").secret_access_key,
                   local_stack.info.seeded.execution.secret_access_key,
                   local_stack.info.seeded.execution.session_token):
        assert secret not in text


def test_local_env_prints_exports_for_a_shell(local_stack: LocalStack) -> None:
    out = subprocess.run([sys.executable, "-m", "rdsvend.cli", "local", "env", "--state-dir",
                          local_stack.info.state_dir], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    exports = dict(line[len("export "):].split("=", 1) for line in out.stdout.splitlines()
                   if line.startswith("export "))
    assert exports["RDSVEND_URL"] == local_stack.url
    assert exports["AWS_ACCESS_KEY_ID"] == local_stack.keys("allowed").access_key_id
    assert set(exports) - {"RDSVEND_LOCAL_MYSQL_ADMIN_DSN"} == {
        "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RDSVEND_URL",
        "RDSVEND_POLICY", "PGSSLROOTCERT", "RDSVEND_LOCAL_ADMIN_DSN", "RDSVEND_AUDIT_LOG_GROUPS",
        "AWS_ENDPOINT_URL_LAMBDA", "RDSVEND_SERVER_ID", "RDSVEND_VEND_FUNCTION", "RDSVEND_LOCAL_STACK"}
    assert out.stdout.startswith("unset AWS_SESSION_TOKEN")


# -- down, also after a crash ---------------------------------------------------------------------

def _listening(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_down_after_a_crash_leaves_nothing_behind(tmp_path: Path) -> None:
    state_dir = tmp_path / "crash"
    stack = LocalStack(state_dir).start()
    pids = stack.pids()
    ports = stack.info.ports()
    base_dirs = [d["base_dir"] for d in stack.info.databases.values() if d.get("kind") != "proxy"]
    assert all(_listening(p) for p in ports)
    os.kill(stack.info.pid, signal.SIGKILL)  # the server dies (and the fronts in it); its PostgreSQL does not
    time.sleep(0.3)
    assert any(_listening(p, BACKEND_HOST) for p in ports)

    out = subprocess.run([sys.executable, "-m", "rdsvend.cli", "local", "down", "--state-dir", str(state_dir)],
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    assert "local stack is down" in out.stdout
    for pid in pids:
        assert not _running(pid), f"process {pid} still running"
    assert not [p for p in ports if _listening(p) or _listening(p, BACKEND_HOST)]
    assert not [d for d in base_dirs if Path(d).exists()]
    assert not state_dir.exists()
    assert read_state(state_dir) is None

    again = subprocess.run([sys.executable, "-m", "rdsvend.cli", "local", "down", "--state-dir", str(state_dir)],
                           capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert again.returncode == 0 and "no local stack was running" in again.stdout
    env = subprocess.run([sys.executable, "-m", "rdsvend.cli", "local", "env", "--state-dir", str(state_dir)],
                         capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert env.returncode == 1 and env.stderr.startswith("rdsvend local: no local stack is running")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
