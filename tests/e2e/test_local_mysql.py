"""The MySQL family end to end on the local stack: the RDS-compatible MariaDB (shop-local).

A vended token logs in with PyMySQL (``rdsvend.connect``, the SQLAlchemy hook) and with the
``mariadb`` command-line client through ``rdsvend exec``; tokens RDS would refuse (tampered,
expired, for another user or endpoint, from a principal without ``rds-db:connect``) are
refused with 1045 and the checker's reason in the stack's log; a connection without TLS is
refused with 3159; the canary passes on the baseline and each fault fails its own check, and
``rdsvend doctor`` explains it. Every fault is undone by the test that made it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlsplit

import boto3
import pymysql
import pytest

from chalicelib.canary.explain import explain_target
from chalicelib.canary.model import TargetReport
from chalicelib.canary.runner import run_canary
from chalicelib.canary.target_run import CanaryDeps
from chalicelib.policy.loader import load_policy_file
from chalicelib.policy.model import AccessPolicy
from devtools.local.aws import AccountSessions
from devtools.local.canary import local_canary_deps, local_canary_env
from devtools.local.sessions import Keys
from devtools.local.stack import LocalStack
from rdsvend import TokenClient
from rdsvend.api import VendedToken
from tests.support.canary_samples import check_of

pytestmark = pytest.mark.e2e

DB = "shop-local"
USER = "shop_app"
KEY = f"{DB}/{USER}"
REPO = Path(__file__).resolve().parents[2]


def _db(stack: LocalStack) -> Mapping[str, Any]:
    return stack.info.databases[DB]


def _ctx(stack: LocalStack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=stack.ca_path)


def _connect(stack: LocalStack, user: str, password: str, **extra: Any) -> Any:
    db = _db(stack)
    return pymysql.connect(host=db["host"], port=db["port"], user=user, password=password, database="shop",
                           ssl=_ctx(stack), connect_timeout=10, **extra)


def _log(stack: LocalStack) -> str:
    return (Path(stack.info.state_dir) / "stack.log").read_text(errors="replace")


def _refused(stack: LocalStack, token: str, reason: str, user: str = USER) -> None:
    """The front refuses the login with 1045 and the checker logged ``reason`` for it."""
    before = _log(stack).count("\n")
    with pytest.raises(pymysql.err.OperationalError) as err:
        _connect(stack, user, token).close()
    assert err.value.args[0] == 1045, err.value
    assert token not in str(err.value)
    new = _log(stack).splitlines()[before:]
    refusals = [line.split(" reason=", 1)[1] for line in new if "rds token login refused" in line]
    assert refusals and refusals[-1].startswith(reason), new[-5:]


def _session(stack: LocalStack, keys: Keys) -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
                                 aws_session_token=keys.session_token, region_name=stack.info.region)


@pytest.fixture(scope="module")
def signer(local_stack: LocalStack) -> boto3.session.Session:
    return _signer_session(local_stack)


def _token(stack: LocalStack, creds: boto3.session.Session, user: str = USER, port: int | None = None,
           at: datetime | None = None) -> str:
    db = _db(stack)
    rds = creds.client("rds", endpoint_url=stack.moto_url)
    kwargs = dict(DBHostname=db["host"], Port=port or db["port"], DBUsername=user, Region=stack.info.region)
    if at is None:
        return str(rds.generate_db_auth_token(**kwargs))
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        return str(rds.generate_db_auth_token(**kwargs))


def _admin(stack: LocalStack) -> Any:
    parts = urlsplit(stack.env()["RDSVEND_LOCAL_MYSQL_ADMIN_DSN"])
    assert parts.username is not None and parts.password is not None
    return pymysql.connect(host=parts.hostname, port=parts.port, user=unquote(parts.username),
                           password=unquote(parts.password), ssl=_ctx(stack), autocommit=True, connect_timeout=10)


def _admin_sql(stack: LocalStack, statement: str, params: tuple[Any, ...] | None = None) -> Any:
    conn = _admin(stack)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        conn.close()


def _client_env(stack: LocalStack) -> dict[str, str]:
    env = {**os.environ, **stack.env("allowed")}
    for key in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        env.pop(key, None)
    return env


# -- logins -----------------------------------------------------------------------------------------

def _tokens(stack: LocalStack) -> TokenClient:
    import rdsvend

    keys = stack.keys("allowed")
    session = boto3.Session(aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
                            region_name=stack.info.region)
    return rdsvend.TokenClient(stack.url, session=session)


def test_vended_token_logs_in_with_pymysql_through_the_client(local_stack: LocalStack,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import rdsvend

    monkeypatch.setenv("PGSSLROOTCERT", local_stack.ca_path)
    tokens = _tokens(local_stack)
    vended = tokens.get(DB, USER)
    assert vended.engine == "mariadb" and vended.auth_plugin == "mysql_clear_password"
    assert vended.dsn == f"mysql://{USER}@localhost:{_db(local_stack)['port']}/shop?ssl-mode=VERIFY_IDENTITY"
    conn = rdsvend.connect(tokens, DB, USER)
    try:
        assert isinstance(conn, pymysql.connections.Connection)
        assert conn._sock.version().startswith("TLSv1.")  # verified TLS to the front
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER(), COUNT(*) FROM items")
            assert cur.fetchone() == (f"{USER}@%", 3)
    finally:
        conn.close()


def test_sqlalchemy_gives_each_new_pool_connection_a_fresh_token(local_stack: LocalStack,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy

    from rdsvend.sqla import create_engine

    monkeypatch.setenv("PGSSLROOTCERT", local_stack.ca_path)
    tokens = _tokens(local_stack)
    asked = []
    real_get = tokens.get

    def counted(database: str, db_user: str) -> VendedToken:
        asked.append((database, db_user))
        return real_get(database, db_user)

    monkeypatch.setattr(tokens, "get", counted)
    engine = create_engine(tokens, DB, USER, poolclass=sqlalchemy.pool.NullPool)
    assert engine.dialect.name == "mysql" and engine.dialect.driver == "pymysql"
    before = len(asked)
    for _ in range(2):
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT CURRENT_USER()")).scalar() == f"{USER}@%"
    assert asked[before:] == [(DB, USER), (DB, USER)]  # asked once per new connection


def test_mariadb_cli_through_rdsvend_exec(local_stack: LocalStack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rdsvend.cli", "exec", DB, USER, "--", "mariadb", "-N", "-B", "-e",
         "SELECT CURRENT_USER(), COUNT(*) FROM items"],
        cwd=REPO, env=_client_env(local_stack), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{USER}@%\t3"
    assert "Action=connect" not in done.stdout + done.stderr


def test_rdsvend_exec_passes_the_client_exit_status(local_stack: LocalStack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rdsvend.cli", "exec", DB, USER, "--", "mariadb", "-e", "SELECT * FROM nowhere"],
        cwd=REPO, env=_client_env(local_stack), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "ERROR 1142" in done.stderr  # the server's refusal, passed through


# -- refusals ---------------------------------------------------------------------------------------

def test_a_token_the_signer_makes_is_accepted(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    with _connect(local_stack, USER, _token(local_stack, signer)) as conn, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone() == (f"{USER}@%",)


def test_tampered_expired_misbound_and_unpermitted_tokens_are_refused_with_the_reason(
    local_stack: LocalStack,
    signer: boto3.session.Session,
) -> None:
    token = _token(local_stack, signer)
    head, _, signature = token.rpartition("X-Amz-Signature=")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    _refused(local_stack, f"{head}X-Amz-Signature={flipped}", "signature:bad_signature")
    _refused(local_stack, _token(local_stack, signer, at=datetime.now(UTC) - timedelta(seconds=960)),
             "signature:expired")
    _refused(local_stack, _token(local_stack, signer, user="orders_app"), "wrong_user")
    _refused(local_stack, _token(local_stack, signer, port=_db(local_stack)["port"] + 1), "wrong_host")
    # the service's execution role: right account, but no policy allows it rds-db:connect
    _refused(local_stack, _token(local_stack, _session(local_stack, local_stack.info.seeded.execution)),
             "not_permitted:")


def test_a_connection_without_tls_is_refused(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    token = _token(local_stack, signer)
    with pytest.raises(pymysql.err.OperationalError) as err:
        _connect(local_stack, USER, token, ssl_disabled=True).close()
    assert err.value.args[0] == 3159 and "insecure transport" in str(err.value)
    assert "reason=insecure_transport" in _log(local_stack)
    db = _db(local_stack)
    cli = subprocess.run(["mariadb", "--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P", str(db["port"]),
                          "-u", USER, "--skip-ssl", "-e", "select 1"], input="", capture_output=True, text=True,
                         timeout=30, env={"PATH": os.environ["PATH"], "MYSQL_PWD": "x"}, check=False)
    assert cli.returncode != 0 and "3159" in cli.stderr


def test_no_token_reaches_the_stack_log(local_stack: LocalStack, signer: boto3.session.Session) -> None:
    token = _token(local_stack, signer)
    text = _log(local_stack)
    assert token not in text
    assert "X-Amz-Signature=" not in text


# -- canary and doctor --------------------------------------------------------------------------------

#: the policy (this database only), the canary's adapters, its environment, an administrator's RDS client
Canary = tuple[AccessPolicy, CanaryDeps, dict[str, str], Any]


@pytest.fixture(scope="module")
def canary(local_stack: LocalStack) -> Canary:
    info = local_stack.info
    full = load_policy_file(info.policy_path)
    policy = dataclasses.replace(full, databases={DB: full.databases[DB]})
    env = local_canary_env(info)
    deps = local_canary_deps(info, policy, env=env)
    # Breaking the instance is an administrator's job (the local AWS enforces IAM).
    rds = AccountSessions(info.moto_url, info.region, info.seeded.management_account).client(
        "rds", info.seeded.execution.account)
    return policy, deps, env, rds


def _run(canary: Canary) -> TargetReport:
    policy, deps, _, _ = canary
    report = run_canary(policy, deps)
    return next(t for t in report.targets if t.key == KEY)


def _problems(target: TargetReport) -> dict[str, str]:
    return {c.id: c.status for c in target.checks if c.status in ("warn", "fail", "error")}


def _doctor(local_stack: LocalStack, canary: Canary) -> subprocess.CompletedProcess[str]:
    _, _, env, _ = canary
    full = {**os.environ, **env}
    for key in ("AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        full.pop(key, None)
    if "AWS_SESSION_TOKEN" not in env:
        full.pop("AWS_SESSION_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "rdsvend.cli", "doctor", DB, USER], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=120, check=False)
    assert env["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
    assert "Action=connect" not in done.stdout
    return done


def test_canary_baseline_passes(canary: Canary) -> None:
    target = _run(canary)
    assert target.status == "pass", _problems(target)
    ids = [c.id for c in target.checks]
    assert ids == ["rds.found", "rds.iam_auth_enabled", "rds.endpoint", "iam.signer_allows", "org.scp_allows",
                   "rds.auth_errors", "db.connect", "db.iam_plugin", "db.tier"]
    connect = check_of(target, "db.connect")
    assert connect.details["latency_ms"] > 0 and connect.details["ssl_mode"] == "VERIFY_IDENTITY"
    assert "AWSAuthenticationPlugin" in check_of(target, "db.iam_plugin").details["plugins"]


def test_plugin_removed_from_the_user(local_stack: LocalStack, canary: Canary) -> None:
    (saved,) = _admin_sql(local_stack, "SELECT Priv FROM mysql.global_priv WHERE User=%s AND Host='%%'", (USER,))[0]
    _admin_sql(local_stack, "ALTER USER 'shop_app'@'%' IDENTIFIED BY 'Not-an-iam-user-1'")
    try:
        target = _run(canary)
        with pytest.raises(pymysql.err.OperationalError) as err:
            _connect(local_stack, USER, _token(local_stack, _signer_session(local_stack)))
        doctor = _doctor(local_stack, canary)
    finally:
        _admin_sql(local_stack, "UPDATE mysql.global_priv SET Priv=%s WHERE User=%s AND Host='%%'", (saved, USER))
        _admin_sql(local_stack, "FLUSH PRIVILEGES")
    assert err.value.args[0] == 1045
    assert _problems(target) == {"db.iam_plugin": "fail"}
    assert check_of(target, "db.connect").status == "skip"
    assert check_of(target, "db.iam_plugin").fix == (
        "ALTER USER 'shop_app'@'%' IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS';")
    assert doctor.returncode == 1
    assert "db.iam_plugin" in doctor.stdout and "AWSAuthenticationPlugin" in doctor.stdout
    assert "1045" in doctor.stdout and "Fix:" in doctor.stdout
    assert _run(canary).status == "pass"


def _signer_session(stack: LocalStack) -> boto3.session.Session:
    """The signer role's session, assumed by the service's execution role, as the app does."""
    sts = _session(stack, stack.info.seeded.execution).client("sts", endpoint_url=stack.moto_url)
    creds = sts.assume_role(RoleArn=stack.info.seeded.signer_role_arn, RoleSessionName="e2e")["Credentials"]
    return boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["SessionToken"], region_name=stack.info.region)


def test_user_granted_grant_option(local_stack: LocalStack, canary: Canary) -> None:
    _admin_sql(local_stack, "GRANT SELECT ON shop.items TO 'shop_app'@'%' WITH GRANT OPTION")
    try:
        target = _run(canary)
        doctor = _doctor(local_stack, canary)
    finally:
        _admin_sql(local_stack, "REVOKE GRANT OPTION ON shop.items FROM 'shop_app'@'%'")
    assert _problems(target) == {"db.tier": "fail"}
    tier = check_of(target, "db.tier")
    assert "GRANT OPTION" in tier.message and "REVOKE GRANT OPTION ON `shop`.`items`" in tier.fix
    assert doctor.returncode == 1 and "db.tier" in doctor.stdout and "GRANT OPTION" in doctor.stdout
    assert _run(canary).status == "pass"


def test_iam_auth_disabled(local_stack: LocalStack, canary: Canary) -> None:
    rds = canary[3]
    rds.modify_db_instance(DBInstanceIdentifier=DB, EnableIAMDatabaseAuthentication=False, ApplyImmediately=True)
    try:
        target = _run(canary)
        with pytest.raises(pymysql.err.OperationalError) as err:
            _connect(local_stack, USER, _token(local_stack, _signer_session(local_stack)))
        doctor = _doctor(local_stack, canary)
    finally:
        rds.modify_db_instance(DBInstanceIdentifier=DB, EnableIAMDatabaseAuthentication=True, ApplyImmediately=True)
    assert err.value.args[0] == 1524 and "AWSAuthenticationPlugin" in str(err.value)
    assert _problems(target) == {"rds.iam_auth_enabled": "fail"}
    assert doctor.returncode == 1 and "rds.iam_auth_enabled" in doctor.stdout and "1524" in doctor.stdout
    assert _run(canary).status == "pass"


def test_doctor_explains_mysql_refusals_in_operator_words(canary: Canary) -> None:
    target = _run(canary)
    from chalicelib.canary.model import CheckResult, TargetReport

    def with_connect(kind: str, errno: int) -> str:
        failed = CheckResult("db.connect", "fail", f"could not connect: ({errno}) refused", "fix it",
                             {"error_kind": kind, "mysql_errno": errno, "engine_family": "mysql"})
        checks = tuple(failed if c.id == "db.connect" else c for c in target.checks)
        return explain_target(TargetReport(target.database, target.db_user, checks, target.auth))

    assert "Access denied" in with_connect("auth", 1045) and "--enable-cleartext-plugin" in with_connect("auth", 1045)
    assert "AWSAuthenticationPlugin' is not loaded" in with_connect("plugin", 1524)
    tls = with_connect("tls", 3159)
    assert "3159" in tls and "--ssl-verify-server-cert" in tls and "rds-global-bundle.pem" in tls
    assert json.dumps(target.to_dict())  # the report serializes
