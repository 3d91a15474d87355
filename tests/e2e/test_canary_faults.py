"""The canary on the local stack: each fault produces its own failing check and nothing else
fails; AWS unreachable is an error, never a pass; a hanging database costs at most its
timeout; an alert goes out once per status change; the doctor names the cause.

Every fault is undone by the test that made it (the stack is shared by the session).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chalicelib.canary.model import CheckResult, Report, Status
from chalicelib.canary.runner import run_canary
from chalicelib.canary.scheduled import run_scheduled
from chalicelib.canary.target_run import CanaryDeps
from chalicelib.policy.loader import load_policy_file
from chalicelib.policy.model import AccessPolicy, CanarySettings, Database
from devtools.local.aws import AccountSessions
from devtools.local.canary import local_canary_deps, local_canary_env
from devtools.local.postgres import free_port
from devtools.local.stack import LocalStack
from tests.support.canary_samples import check_of

pytestmark = pytest.mark.e2e

DB = "orders-local"
APP = f"{DB}/orders_app"
PROXIED = {"orders-proxy/orders_app", "shop-proxy/shop_app"}  # the same users through the local proxies
OWNER = f"{DB}/orders_owner"
ETL = f"{DB}/etl_legacy"
REPO = Path(__file__).resolve().parents[2]


class Canary:
    """The canary against the shared local stack, plus handles to break and repair it."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.info = stack.info
        self.policy = load_policy_file(self.info.policy_path)
        self.env = local_canary_env(self.info)
        self.deps = local_canary_deps(self.info, self.policy, env=self.env)
        session = self.info.seeded.execution.session(self.info.region)
        mgmt = self.info.seeded.management_account
        admin = AccountSessions(self.info.moto_url, self.info.region, mgmt)
        # Breaking and repairing the world is an administrator's job (the local AWS enforces IAM).
        service = self.info.seeded.execution.account
        self.rds = admin.client("rds", service)
        self.iam = admin.client("iam", service)
        self.session = session
        self.orgs = admin.client("organizations", mgmt)
        self.baseline = self.problems(self.run())

    def run(self, policy: AccessPolicy | None = None, deps: CanaryDeps | None = None) -> Report:
        return run_canary(policy or self.policy, deps or self.deps)

    @staticmethod
    def problems(report: Report) -> dict[tuple[str, str], Status]:
        return {(t.key, c.id): c.status for t in report.targets for c in t.checks if c.status in ("warn", "fail", "error")}

    def new_problems(self, report: Report) -> dict[tuple[str, str], Status]:
        """What the fault changed, on the databases themselves. The same users reached through the
        local RDS Proxies fail along with them (their leg 2): tests/e2e/test_proxy_canary.py covers them."""
        now = self.problems(report)
        return {k: v for k, v in now.items() if self.baseline.get(k) != v and k[0] not in PROXIED}

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        with psycopg.connect(self.info.admin_dsn, dbname=dbname, autocommit=True) as conn:
            conn.execute(statement)


@pytest.fixture(scope="module")
def canary(local_stack: LocalStack) -> Canary:
    return Canary(local_stack)


def check(report: Report, key: str, cid: str) -> CheckResult:
    target = next(t for t in report.targets if t.key == key)
    return check_of(target, cid)


def test_baseline_is_all_pass_the_kerberos_user_included(canary: Canary) -> None:
    report = canary.run()
    by_key = {t.key: t for t in report.targets}
    assert by_key[APP].status == "pass" and by_key[OWNER].status == "pass"
    assert check(report, APP, "db.connect").details["latency_ms"] > 0
    assert check(report, APP, "db.connect").details["sslmode"] == "verify-full"
    # The Kerberos user's instance is joined to the local directory, through the directory role.
    assert canary.baseline == {}
    assert {c.id: c.status for c in by_key[ETL].checks if c.id in (
        "rds.domain_joined", "iam.directory_role", "db.rds_ad")} == dict.fromkeys(
        ("rds.domain_joined", "iam.directory_role", "db.rds_ad"), "pass")
    assert "AmazonRDSDirectoryServiceAccess" in check(report, ETL, "iam.directory_role").message


def test_rds_iam_revoked(canary: Canary) -> None:
    canary.sql("REVOKE rds_iam FROM orders_app")
    try:
        report = canary.run()
    finally:
        canary.sql("GRANT rds_iam TO orders_app")
    assert canary.new_problems(report) == {(APP, "db.rds_iam"): "fail"}
    assert check(report, APP, "db.connect").status == "skip"
    assert check(report, APP, "db.rds_iam").fix == "GRANT rds_iam TO orders_app;"


def test_iam_auth_disabled_on_the_instance(canary: Canary) -> None:
    canary.rds.modify_db_instance(DBInstanceIdentifier=DB, EnableIAMDatabaseAuthentication=False, ApplyImmediately=True)
    try:
        report = canary.run()
    finally:
        canary.rds.modify_db_instance(DBInstanceIdentifier=DB, EnableIAMDatabaseAuthentication=True,
                                      ApplyImmediately=True)
    assert canary.new_problems(report) == {(APP, "rds.iam_auth_enabled"): "fail",
                                           (OWNER, "rds.iam_auth_enabled"): "fail"}


@contextlib.contextmanager
def scp_denying_rds_db(canary: Canary, target_id: str) -> Iterator[str]:
    doc = {"Version": "2012-10-17", "Statement": [
        {"Sid": "NoDatabaseLogins", "Effect": "Deny", "Action": "rds-db:*", "Resource": "*"}]}
    policy_id = canary.orgs.create_policy(Name="DenyRdsDb", Description="canary fault", Type="SERVICE_CONTROL_POLICY",
                                          Content=json.dumps(doc))["Policy"]["PolicySummary"]["Id"]
    canary.orgs.attach_policy(PolicyId=policy_id, TargetId=target_id)
    try:
        yield policy_id
    finally:
        canary.orgs.detach_policy(PolicyId=policy_id, TargetId=target_id)
        canary.orgs.delete_policy(PolicyId=policy_id)


def iam_targets(canary: Canary, account: str | None = None) -> set[str]:
    """Every (database/db user) key of an IAM user of an RDS database (rds-db:connect; not an
    Aurora DSQL cluster's), of databases in ``account`` (default: all)."""
    return {f"{db.name}/{u.name}" for db in canary.policy.databases.values() for u in db.users.values()
            if u.auth == "iam" and not db.is_dsql
            and account in (None, canary.info.databases[db.identifier]["account"])
            and f"{db.name}/{u.name}" not in PROXIED}


@pytest.mark.parametrize("level", ["root", "ou"])
def test_scp_denying_rds_db_at_root_and_at_ou(canary: Canary, level: str) -> None:
    seeded = canary.info.seeded
    target = seeded.root_id if level == "root" else seeded.units["Services"]
    with scp_denying_rds_db(canary, target) as policy_id:
        report = canary.run()
    # At the root: every account's databases; at the Services OU: the service account's only.
    hit = iam_targets(canary, None if level == "root" else seeded.execution.account)
    assert {APP, OWNER} <= hit
    assert canary.new_problems(report) == {(key, "org.scp_allows"): "fail" for key in hit}
    message = check(report, APP, "org.scp_allows").message
    assert policy_id in message and "NoDatabaseLogins" in message
    assert (target in message) if level == "root" else ("OU Services" in message)


def test_signer_policy_built_from_the_instance_name(canary: Canary) -> None:
    arn = f"arn:aws:iam::{canary.info.seeded.execution.account}:policy/rdsvend-signer-rds-connect"
    original = canary.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    doc = canary.iam.get_policy_version(PolicyArn=arn, VersionId=original)["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    resource_id = canary.info.databases[DB]["resource_id"]
    wrong = json.loads(json.dumps(doc).replace(resource_id, DB))
    version = canary.iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(wrong),
                                               SetAsDefault=True)["PolicyVersion"]["VersionId"]
    try:
        report = canary.run()
    finally:
        canary.iam.set_default_policy_version(PolicyArn=arn, VersionId=original)
        canary.iam.delete_policy_version(PolicyArn=arn, VersionId=version)
    assert canary.new_problems(report) == {(APP, "iam.signer_allows"): "fail", (OWNER, "iam.signer_allows"): "fail",
                                           # shop_app and shop_owner are still allowed by the same
                                           # statement, which now also holds the flagged ARN: a warning
                                           ("shop-local/shop_app", "iam.signer_allows"): "warn",
                                           ("shop-local/shop_owner", "iam.signer_allows"): "warn"}
    result = check(report, APP, "iam.signer_allows")
    assert f"dbuser:{DB}/orders_app" in result.fix and f"dbuser:{resource_id}/orders_app" in result.fix


def test_rds_ad_granted_as_well(canary: Canary) -> None:
    canary.sql("GRANT rds_ad TO orders_app")
    try:
        report = canary.run()
    finally:
        canary.sql("REVOKE rds_ad FROM orders_app")
    assert canary.new_problems(report) == {(APP, "db.auth_conflict"): "fail"}


@pytest.mark.parametrize("fault, undo, words", [
    ("ALTER ROLE orders_app CREATEROLE", "ALTER ROLE orders_app NOCREATEROLE", "can create roles"),
    ("ALTER ROLE orders_app SUPERUSER", "ALTER ROLE orders_app NOSUPERUSER", "is superuser"),
    ("CREATE SCHEMA app_private AUTHORIZATION orders_app", "DROP SCHEMA app_private", "owns schema app_private"),
])
def test_service_user_with_too_much_privilege(canary: Canary, fault: str, undo: str, words: str) -> None:
    dbname = canary.info.databases[DB]["dbname"]
    canary.sql(fault, dbname=dbname)
    try:
        report = canary.run()
    finally:
        canary.sql(undo, dbname=dbname)
    assert canary.new_problems(report) == {(APP, "db.tier"): "fail"}
    assert words in check(report, APP, "db.tier").message


def test_database_stopped(canary: Canary) -> None:
    canary.rds.stop_db_instance(DBInstanceIdentifier=DB)
    try:
        report = canary.run()
    finally:
        canary.rds.start_db_instance(DBInstanceIdentifier=DB)
    assert canary.new_problems(report) == {(f"{DB}/{user}", "rds.found"): "fail"
                                           for user in canary.policy.databases[DB].users}
    assert {(APP, "rds.found"), (OWNER, "rds.found"), (ETL, "rds.found")} <= set(canary.new_problems(report))
    assert "stopped" in check(report, APP, "rds.found").message
    assert check(report, APP, "db.connect").status == "skip"


def test_aws_endpoint_unreachable_is_an_error_never_a_pass(canary: Canary) -> None:
    deps = local_canary_deps(canary.info, canary.policy, endpoint_url=f"http://127.0.0.1:{free_port()}",
                             env=canary.env)
    report = canary.run(deps=deps)
    assert {t.status for t in report.targets} == {"error"}
    for target in report.targets:
        for c in target.checks:
            if c.id.split(".")[0] in ("rds", "iam", "org"):
                assert c.status in ("error", "skip"), (target.key, c.id, c.status)
    assert "EndpointConnectionError" in check(report, APP, "rds.found").message
    assert check(report, APP, "db.connect").status == "error"  # no token could be signed


@contextlib.contextmanager
def hanging_listener() -> Iterator[int]:
    """Accepts TCP connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_a_hanging_database_costs_at_most_its_timeout(canary: Canary) -> None:
    with hanging_listener() as port:
        good = canary.policy.databases[DB]
        hang = Database("orders-hang", "postgres", good.region, "instance", good.identifier,
                        {"orders_app": good.users["orders_app"]}, host="127.0.0.1", port=port,
                        dbname=good.dbname, signer_role=good.signer_role)
        policy = dataclasses.replace(canary.policy, databases={**canary.policy.databases, "orders-hang": hang},
                                     canary=CanarySettings(timeout_seconds=3, concurrency=4))
        started = time.monotonic()
        report = canary.run(policy=policy)
        elapsed = time.monotonic() - started
    hung = next(t for t in report.targets if t.database == "orders-hang")
    assert hung.status == "error"
    assert check_of(hung, "db.connect").status == "error"
    assert check_of(hung, "rds.endpoint").status == "warn"  # 127.0.0.1:port is not the RDS endpoint
    others = [t for t in report.targets if t.database != "orders-hang"]
    assert canary.new_problems(dataclasses.replace(report, targets=tuple(others))) == {}
    assert elapsed < 3 + 10  # the timeout plus the healthy targets' own work, never the hang


class ListLog:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.correlation_id: str | None = None

    def set_correlation_id(self, value: str) -> None:
        self.correlation_id = value

    def info(self, msg: dict[str, Any]) -> None:
        self.lines.append(msg)

    warning = error = info


def test_alert_once_per_status_change(canary: Canary) -> None:
    session = canary.session
    endpoint = canary.info.moto_url

    def clients(service: str, region: str | None = None) -> Any:
        return session.client(service, endpoint_url=endpoint)

    # The table, topic and queue are made by an administrator; the scheduled canary runs as the function.
    admin = AccountSessions(endpoint, canary.info.region, canary.info.seeded.management_account)
    service = canary.info.seeded.execution.account
    ddb, sns, sqs = admin.client("dynamodb", service), admin.client("sns", service), admin.client("sqs", service)
    table = f"canary-state-{os.getpid()}"
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    topic = sns.create_topic(Name=f"canary-alerts-{os.getpid()}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"canary-alerts-{os.getpid()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    env = {"RDSVEND_STATE_TABLE": table, "RDSVEND_ALERT_TOPIC": topic, "AWS_DEFAULT_REGION": canary.info.region}

    def scheduled() -> tuple[dict[str, Any], ListLog]:
        log = ListLog()
        result = run_scheduled(event_id="evt-1", env=env, policy=canary.policy, deps=canary.deps,
                               clients=clients, log=log)
        return result, log

    def drained() -> list[tuple[str, str | None, str]]:
        out = []
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                body = json.loads(message["Body"])
                out.append((f"{body['database']}/{body['db_user']}", body["previous"], body["status"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return sorted(out)

    first, log = scheduled()
    assert drained() == []  # first sighting: only what is failing, and nothing is
    assert log.lines[0]["event"] == "canary_report" and log.correlation_id == "evt-1"
    assert [line for line in log.lines if line["event"] == "canary_check"] == []
    assert scheduled()[0]["alerts"] == 0 and drained() == []

    canary.sql("REVOKE rds_iam FROM orders_app")
    try:  # orders_app fails on its instance and, leg 2, through its proxy
        assert scheduled()[0]["alerts"] == 2
        assert drained() == [(APP, "pass", "fail"), ("orders-proxy/orders_app", "pass", "fail")]
        assert scheduled()[0]["alerts"] == 0 and drained() == []
    finally:
        canary.sql("GRANT rds_iam TO orders_app")
    assert scheduled()[0]["alerts"] == 2
    assert drained() == [(APP, "fail", "pass"), ("orders-proxy/orders_app", "fail", "pass")]


def test_doctor_names_the_scp_and_the_pam_error_and_exits_1(canary: Canary) -> None:
    env = {**os.environ, **canary.env}
    for key in ("AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        env.pop(key, None)
    if "AWS_SESSION_TOKEN" not in canary.env:
        env.pop("AWS_SESSION_TOKEN", None)
    with scp_denying_rds_db(canary, canary.info.seeded.units["Services"]) as policy_id:
        done = subprocess.run([sys.executable, "-m", "rdsvend.cli", "doctor", DB, "orders_app"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "org.scp_allows" in out and policy_id in out and "NoDatabaseLogins" in out
    assert "PAM authentication failed for user" in out
    assert "Fix:" in out
    assert canary.info.admin_dsn not in out and canary.env["AWS_SECRET_ACCESS_KEY"] not in out + done.stderr


def test_cli_exit_codes_for_a_healthy_target_and_a_bad_policy(canary: Canary, tmp_path: Path) -> None:
    env = {**os.environ, **canary.env}
    env.pop("AWS_SECURITY_TOKEN", None)
    if "AWS_SESSION_TOKEN" not in canary.env:
        env.pop("AWS_SESSION_TOKEN", None)
    ok = subprocess.run([sys.executable, "-m", "rdsvend.cli", "doctor", DB, "orders_owner", "--json"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    body = json.loads(ok.stdout)
    assert body["summary"] == {"targets": 1, "pass": 1, "warn": 0, "fail": 0, "error": 0}
    assert "Action=connect" not in ok.stdout  # the token never reaches the output
    whole = subprocess.run([sys.executable, "-m", "rdsvend.cli", "canary"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert whole.returncode == 0, whole.stdout + whole.stderr  # the baseline is all pass
    targets = sum(len(db.users) for db in canary.policy.databases.values())
    assert "orders_app" in whole.stdout and "etl_legacy" in whole.stdout
    assert f"{targets} targets: {targets} pass, 0 warn, 0 fail, 0 error" in whole.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndatabases: {}\nrules: []\nbogus: 1\n")
    broken = subprocess.run([sys.executable, "-m", "rdsvend.cli", "canary", "--policy", str(bad)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1
    assert "bogus" in broken.stderr
