"""The canary and the doctor through the local RDS Proxy fronts: the baseline passes on both
legs; each fault (the signer's grant on prx- removed, the proxy role's grant removed, the user
out of rds_iam on the target, the target deregistered) fails its own check, names its leg,
gives the fix, and nothing else fails (the login is then not attempted). Every fault is undone
by the test that made it (the stack is shared by the session)."""
from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest

from chalicelib.canary.model import CheckResult, Status, TargetReport
from chalicelib.canary.runner import run_canary
from chalicelib.policy.loader import load_policy_file
from devtools.local.aws import AccountSessions
from devtools.local.canary import local_canary_deps, local_canary_env
from devtools.local.stack import LocalStack
from tests.support.canary_samples import check_of

pytestmark = pytest.mark.e2e

ACCOUNT = "222222222222"
PG = "orders-proxy/orders_app"
MARIA = "shop-proxy/shop_app"
PROXY_KEYS = (PG, MARIA)


class ProxyCanary:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.info = stack.info
        self.policy = load_policy_file(self.info.policy_path)
        self.deps = local_canary_deps(self.info, self.policy)
        sessions = AccountSessions(self.info.moto_url, self.info.region, self.info.seeded.management_account)
        self.iam = sessions.client("iam", ACCOUNT)
        self.rds = sessions.client("rds", ACCOUNT)

    def run(self) -> dict[str, TargetReport]:
        report = run_canary(self.policy, self.deps)
        return {t.key: t for t in report.targets if t.key in PROXY_KEYS}

    @staticmethod
    def problems(target: TargetReport) -> dict[str, Status]:
        return {c.id: c.status for c in target.checks if c.status not in ("pass", "skip")}

    def sql(self, statement: str) -> None:
        with psycopg.connect(self.info.admin_dsns["orders-local"], autocommit=True) as conn:
            conn.execute(statement)

    def mysql(self, statement: str, params: tuple[Any, ...] | None = None) -> Any:
        parts = urlsplit(self.stack.env()["RDSVEND_LOCAL_MYSQL_ADMIN_DSN"])
        assert parts.username is not None and parts.password is not None
        conn = pymysql.connect(host=parts.hostname, port=parts.port, user=unquote(parts.username),
                               password=unquote(parts.password), autocommit=True, connect_timeout=10,
                               ssl=ssl.create_default_context(cafile=self.info.ca_path))
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def canary(local_stack: LocalStack) -> ProxyCanary:
    return ProxyCanary(local_stack)


def assert_only(target: TargetReport, cid: str, leg: int) -> CheckResult:
    """``cid`` fails on ``leg``, nothing else is wrong, and the login was not attempted because of it."""
    assert ProxyCanary.problems(target) == {cid: "fail"}, [c.to_dict() for c in target.checks if c.status != "pass"]
    result = check_of(target, cid)
    assert result.details["leg"] == leg and result.message.startswith(f"leg {leg}: ")
    assert result.fix
    login = check_of(target, "db.connect")
    assert login.status == "skip" and login.details["blocked_by"] == [cid] and login.details["legs"] == [leg]
    return result


def test_baseline_passes_on_both_legs_with_a_real_login(canary: ProxyCanary) -> None:
    for key, target in canary.run().items():
        assert target.status == "pass", (key, [c.to_dict() for c in target.checks if c.status != "pass"])
        assert all(c.status == "pass" for c in target.checks if c.id.startswith(("proxy.", "iam.", "db."))), key
        ids = [c.id for c in target.checks]
        assert {"proxy.target", "proxy.role_allows", "db.connect"} <= set(ids)
        assert check_of(target, "iam.signer_allows").details["leg"] == 1
        assert ":dbuser:prx-" in check_of(target, "iam.signer_allows").details["dbuser_arn"]
        role = check_of(target, "proxy.role_allows")
        assert role.details["leg"] == 2 and role.details["role"].endswith(":role/rdsvend-proxy")
        assert ":dbuser:db-" in role.details["resource"]
        assert check_of(target, "db.connect").details["latency_ms"] > 0
    assert "db.rds_iam" in [c.id for c in canary.run()[PG].checks]
    assert "db.iam_plugin" in [c.id for c in canary.run()[MARIA].checks]


@contextlib.contextmanager
def signer_without_proxy_grants(canary: ProxyCanary) -> Iterator[None]:
    arn = f"arn:aws:iam::{ACCOUNT}:policy/rdsvend-signer-rds-connect"
    policy = canary.iam.get_policy(PolicyArn=arn)["Policy"]
    old = policy["DefaultVersionId"]
    doc = canary.iam.get_policy_version(PolicyArn=arn, VersionId=old)["PolicyVersion"]["Document"]
    doc = doc if isinstance(doc, dict) else json.loads(doc)
    doc["Statement"][0]["Resource"] = [r for r in doc["Statement"][0]["Resource"] if ":dbuser:prx-" not in r]
    new = canary.iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(doc), SetAsDefault=True)
    try:
        yield
    finally:
        canary.iam.set_default_policy_version(PolicyArn=arn, VersionId=old)
        canary.iam.delete_policy_version(PolicyArn=arn, VersionId=new["PolicyVersion"]["VersionId"])


def test_leg_one_signer_grant_on_prx_removed(canary: ProxyCanary) -> None:
    with signer_without_proxy_grants(canary):
        targets = canary.run()
    for key in PROXY_KEYS:
        result = assert_only(targets[key], "iam.signer_allows", 1)
        assert ":dbuser:prx-" in result.details["dbuser_arn"]
        assert "rds-db:connect" in result.fix


@contextlib.contextmanager
def proxy_role_without_grant(canary: ProxyCanary) -> Iterator[None]:
    arn = f"arn:aws:iam::{ACCOUNT}:policy/rdsvend-proxy-rds-connect"
    canary.iam.detach_role_policy(RoleName="rdsvend-proxy", PolicyArn=arn)
    try:
        yield
    finally:
        canary.iam.attach_role_policy(RoleName="rdsvend-proxy", PolicyArn=arn)


def test_leg_two_proxy_role_grant_removed(canary: ProxyCanary) -> None:
    with proxy_role_without_grant(canary):
        targets = canary.run()
    for key in PROXY_KEYS:
        result = assert_only(targets[key], "proxy.role_allows", 2)
        assert "rdsvend-proxy" in result.message and ":dbuser:db-" in result.details["resource"]
        assert "rdsvend policy render --only proxy-role" in result.fix


def test_leg_two_user_out_of_rds_iam_on_the_target(canary: ProxyCanary) -> None:
    canary.sql("REVOKE rds_iam FROM orders_app")
    try:
        targets = canary.run()
    finally:
        canary.sql("GRANT rds_iam TO orders_app")
    result = assert_only(targets[PG], "db.rds_iam", 2)
    assert result.fix == "GRANT rds_iam TO orders_app;"
    assert targets[MARIA].status == "pass"


def test_leg_two_mariadb_user_without_the_iam_plugin(canary: ProxyCanary) -> None:
    (saved,) = canary.mysql("SELECT Priv FROM mysql.global_priv WHERE User=%s AND Host='%%'",
                          ("shop_app",))[0]
    canary.mysql("ALTER USER 'shop_app'@'%' IDENTIFIED BY 'Not-an-iam-user-1'")
    try:
        targets = canary.run()
    finally:
        canary.mysql("UPDATE mysql.global_priv SET Priv=%s WHERE User=%s AND Host='%%'", (saved, "shop_app"))
        canary.mysql("FLUSH PRIVILEGES")
    result = assert_only(targets[MARIA], "db.iam_plugin", 2)
    assert "AWSAuthenticationPlugin" in result.fix
    assert targets[PG].status == "pass"


@contextlib.contextmanager
def target_deregistered(canary: ProxyCanary, proxy: str, instance: str) -> Iterator[None]:
    canary.rds.deregister_db_proxy_targets(DBProxyName=proxy, DBInstanceIdentifiers=[instance])
    try:
        yield
    finally:
        canary.rds.register_db_proxy_targets(DBProxyName=proxy, DBInstanceIdentifiers=[instance])
        canary.rds.describe_db_proxy_targets(DBProxyName=proxy)  # moto: the first read says REGISTERING


@pytest.mark.parametrize(("key", "proxy", "instance", "other"), [
    (PG, "orders-proxy", "orders-local", MARIA), (MARIA, "shop-proxy", "shop-local", PG)])
def test_leg_two_target_deregistered(canary: ProxyCanary, key: str, proxy: str, instance: str, other: str) -> None:
    with target_deregistered(canary, proxy, instance):
        targets = canary.run()
    result = assert_only(targets[key], "proxy.target", 2)
    assert f"register-db-proxy-targets --db-proxy-name {proxy} --db-instance-identifiers {instance}" in result.fix
    assert targets[other].status == "pass"


def test_doctor_says_which_leg_refused(canary: ProxyCanary) -> None:
    own = local_canary_env(canary.info)
    env = {**os.environ, **own}
    for key in ("AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        env.pop(key, None)
    if "AWS_SESSION_TOKEN" not in own:
        env.pop("AWS_SESSION_TOKEN", None)
    with proxy_role_without_grant(canary):
        done = subprocess.run([sys.executable, "-m", "rdsvend.cli", "doctor", "orders-proxy", "orders_app"],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "leg 2 (proxy to target) refused" in done.stdout
    assert "proxy.role_allows" in done.stdout and "rdsvend-proxy" in done.stdout
    assert "leg 1 (caller to proxy) refused" not in done.stdout
    assert own["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
