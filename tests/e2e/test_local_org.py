"""The local organization end to end: the database in the second member account (vend, a
verify-full login), the operator's shell (``rdsvend local env --as operator``) giving the
scheduled canary's verdicts, the canary's fault matrix applied to that database (each fault
fails its own check and nothing else), and what a caller's shell sees.

Every fault is undone by the test that made it (the stack is shared by the session).
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator

import boto3
import psycopg
import pytest

from chalicelib.canary.model import CheckResult, Report, Status
from chalicelib.canary.runner import run_canary
from chalicelib.policy.loader import load_policy_file
from devtools.local.aws import AccountSessions
from devtools.local.canary import local_canary_deps
from devtools.local.stack import LocalStack
from tests.support.canary_samples import check_of
from tests.support.local_shell import rdsvend, shell_env

pytestmark = pytest.mark.e2e

DB = "billing-local"
APP = f"{DB}/billing_app"
DATA = "444444444444"


class Org:
    """The operator's canary over the shared stack, with handles to break the second account."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.info = stack.info
        self.policy = load_policy_file(self.info.policy_path)
        self.operator = shell_env(stack, "operator")
        sessions = AccountSessions(self.info.moto_url, self.info.region, self.info.seeded.management_account)
        self.rds = sessions.client("rds", DATA)  # the account's administrator, not the reader
        self.iam = sessions.client("iam", DATA)
        self.orgs = sessions.client("organizations", self.info.seeded.management_account)
        self.baseline = self.problems(self.run())

    def run(self) -> Report:
        return run_canary(self.policy, local_canary_deps(self.info, self.policy, as_operator=True))

    @staticmethod
    def problems(report: Report) -> dict[tuple[str, str], Status]:
        return {(t.key, c.id): c.status for t in report.targets for c in t.checks
                if c.status in ("warn", "fail", "error")}

    def new_problems(self, report: Report) -> dict[tuple[str, str], Status]:
        return {k: v for k, v in self.problems(report).items() if self.baseline.get(k) != v}

    def sql(self, statement: str, dbname: str = "billing") -> None:
        with psycopg.connect(self.info.admin_dsns[DB], dbname=dbname, autocommit=True) as conn:
            conn.execute(statement)


@pytest.fixture(scope="module")
def org(local_stack: LocalStack) -> Org:
    return Org(local_stack)


def check(report: Report, key: str, cid: str) -> CheckResult:
    return check_of(next(t for t in report.targets if t.key == key), cid)


# -- the database in the second account -------------------------------------------------------------

def test_vend_and_a_verify_full_login_for_the_database_in_the_second_account(local_stack: LocalStack, org: Org) -> None:
    from rdsvend.api import VendApi
    from rdsvend.connect import connection_params

    keys = local_stack.keys("allowed")
    session = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                    aws_secret_access_key=keys.secret_access_key, region_name=org.info.region)
    vended = VendApi(local_stack.url, session=session, region=org.info.region).vend(DB, "billing_app")
    assert vended.rule == "billing-api"
    # Where RDS, read in the database's own account through its reader role, says it is.
    reader = boto3.session.Session(**_assumed(org, f"arn:aws:iam::{DATA}:role/rdsvend-reader"))
    (described,) = reader.client("rds", endpoint_url=org.info.moto_url).describe_db_instances(
        DBInstanceIdentifier=DB)["DBInstances"]
    assert (vended.host, vended.port) == (described["Endpoint"]["Address"], described["Endpoint"]["Port"])
    params = connection_params(vended, {"PGSSLROOTCERT": local_stack.ca_path})
    assert params["sslmode"] == "verify-full"
    with psycopg.connect(**params, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), "
            "inet_server_port()").fetchone()
        rows = conn.execute("SELECT customer, cents FROM ledger.invoices ORDER BY id").fetchall()
    assert row == ("billing_app", True, described["Endpoint"]["Port"])
    assert rows == [("acme", 12000), ("globex", 4550)]


def _assumed(org: Org, role_arn: str) -> dict[str, str]:
    keys = org.info.seeded.callers["operator"]
    sts = keys.session(org.info.region).client("sts", endpoint_url=org.info.moto_url)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="e2e-test")["Credentials"]
    return {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"], "region_name": org.info.region}


# -- the operator's shell --------------------------------------------------------------------------

def test_local_env_as_caller_denied_or_operator(local_stack: LocalStack, org: Org) -> None:
    shells = {part: shell_env(local_stack, part) for part in ("caller", "denied", "operator")}
    callers = org.info.seeded.callers
    for part, name in (("caller", "allowed"), ("denied", "denied"), ("operator", "operator")):
        assert shells[part]["AWS_ACCESS_KEY_ID"] == callers[name].access_key_id
        sts = boto3.client("sts", endpoint_url=shells[part]["AWS_ENDPOINT_URL"], region_name=org.info.region,
                           aws_access_key_id=shells[part]["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=shells[part]["AWS_SECRET_ACCESS_KEY"])
        assert sts.get_caller_identity()["Arn"] == callers[name].arn
    assert callers["operator"].arn == "arn:aws:iam::222222222222:user/rdsvend-operator"
    assert shells["operator"]["RDSVEND_ORG_ROLE_ARN"] == "arn:aws:iam::111111111111:role/rdsvend-org-reader"
    assert "RDSVEND_ORG_ROLE_ARN" not in shells["caller"] and "RDSVEND_ORG_ROLE_ARN" not in shells["denied"]
    base = ["local", "env", "--state-dir", org.info.state_dir]
    for bad in (["--as", "root"], ["--as", "operator", "--caller", "denied"]):
        done = rdsvend(dict(os.environ), *base, *bad)
        assert done.returncode == 2 and done.stdout == ""
        assert "--as" in done.stderr.strip().splitlines()[-1]  # the error line names the option


def test_the_operators_canary_is_all_pass_and_gives_the_scheduled_canarys_verdicts(org: Org) -> None:
    assert org.baseline == {}
    done = rdsvend(org.operator, "canary", "--json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    report = json.loads(done.stdout)
    targets = sum(len(db.users) for db in org.policy.databases.values())
    assert report["summary"] == {"targets": targets, "pass": targets, "warn": 0, "fail": 0, "error": 0}
    scheduled = run_canary(org.policy, local_canary_deps(org.info, org.policy))
    assert {(t["database"], t["db_user"]): {c["id"]: c["status"] for c in t["checks"]}
            for t in report["targets"]} == {(t.database, t.db_user): {c.id: c.status for c in t.checks}
                                            for t in scheduled.targets}
    billing = next(t for t in report["targets"] if t["database"] == DB)
    assert {c["id"]: c["status"] for c in billing["checks"]}["db.connect"] == "pass"
    assert org.operator["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr


def test_the_operators_doctor_and_policy_render_for_the_second_account(org: Org) -> None:
    doctor = rdsvend(org.operator, "doctor", DB, "billing_app", "--json")
    assert doctor.returncode == 0, doctor.stdout[-2000:] + doctor.stderr
    assert json.loads(doctor.stdout)["summary"]["pass"] == 1
    render = rdsvend(org.operator, "policy", "render", org.info.policy_path)
    assert render.returncode == 0, render.stderr
    rendered = {p["signer"]: sorted(p["policy"]["Statement"][0]["Resource"])
                for p in json.loads(render.stdout)["signer_policies"]}
    # What render says the second account's signer needs is what that signer holds.
    arn = f"arn:aws:iam::{DATA}:policy/rdsvend-signer-rds-connect"
    version = org.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    held = org.iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    held = held if isinstance(held, dict) else json.loads(held)
    assert rendered[f"arn:aws:iam::{DATA}:role/rdsvend-signer"] == sorted(held["Statement"][0]["Resource"])
    resource_id = org.info.databases[DB]["resource_id"]
    assert rendered[f"arn:aws:iam::{DATA}:role/rdsvend-signer"] == [
        f"arn:aws:rds-db:us-east-1:{DATA}:dbuser:{resource_id}/billing_app"]


def test_doctor_with_a_callers_keys_names_the_account_it_searched(org: Org) -> None:
    caller = shell_env(org.stack, "caller")
    done = rdsvend(caller, "doctor", "orders-local", "orders_app")
    assert done.returncode == 1
    # The caller may not describe RDS at all (the local AWS enforces IAM): the check errors with
    # the denial, and still says where it looked.
    assert any("rds.found" in line and "ERROR" in line for line in done.stdout.splitlines())
    assert "AccessDenied" in done.stdout
    text = done.stdout
    assert "333333333333" in text  # where it looked: the caller's account ...
    assert "222222222222" in text  # ... and the database's
    assert caller["AWS_SECRET_ACCESS_KEY"] not in text + done.stderr


def test_discover_as_the_operator_lists_what_rds_has_in_every_account(org: Org) -> None:
    # The member accounts: each carries the reader role (the management account does not).
    accounts = {"222222222222", "333333333333", DATA}
    done = rdsvend(org.operator, "discover", "--format", "json", "--accounts", ",".join(sorted(accounts)))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    found = json.loads(done.stdout)
    assert {a["account"]: a["status"] for a in found["accounts"]} == dict.fromkeys(accounts, "ok")
    listed = {(d["account"], d["identifier"]): d for d in found["databases"] if d["engine"] != "dsql"}
    # The world's Aurora DSQL cluster, as the local DSQL API lists it.
    ledger = org.info.seeded.dsql["ledger-local"]
    (cluster,) = [d for d in found["databases"] if d["engine"] == "dsql"]
    assert (cluster["account"], cluster["identifier"], cluster["iam_auth"]) == (ledger.account, ledger.identifier, True)
    # Every instance of the world, in its own account, as RDS there describes it.
    assert set(listed) == {(str(db["account"]), ident) for ident, db in org.info.databases.items()}
    sessions = AccountSessions(org.info.moto_url, org.info.region, org.info.seeded.management_account)
    for (account, ident), entry in listed.items():
        if entry["kind"] == "proxy":  # an RDS Proxy: its prx- id, as RDS describes the proxy
            (proxy,) = sessions.client("rds", account).describe_db_proxies(DBProxyName=ident)["DBProxies"]
            assert entry["resource_id"] == proxy["DBProxyArn"].rsplit(":", 1)[-1]
            continue
        (rds,) = sessions.client("rds", account).describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"]
        assert (entry["kind"], entry["engine"], entry["resource_id"], entry["iam_auth"]) == (
            "instance", rds["Engine"], rds["DbiResourceId"], rds["IAMDatabaseAuthenticationEnabled"])
        assert (entry["host"], entry["port"]) == (rds["Endpoint"]["Address"], rds["Endpoint"]["Port"])
        assert ("kerberos_domain" in entry["flags"]) == bool(rds.get("DomainMemberships"))
    assert listed[(DATA, DB)]["resource_id"] == org.info.databases[DB]["resource_id"]
    assert "kerberos_domain" in listed[("222222222222", "orders-local")]["flags"]
    # The yaml is a databases: block ready to paste, with the same resource ids.
    import yaml

    pasted = rdsvend(org.operator, "discover", "--accounts", DATA)
    assert pasted.returncode == 0, pasted.stderr
    block = yaml.safe_load(pasted.stdout)["databases"]
    assert block[DB]["resource_id"] == org.info.databases[DB]["resource_id"]
    assert block[DB]["account"] == DATA and block[DB]["instance"] == DB


@pytest.mark.parametrize("who, role, why", [
    ("allowed", f"arn:aws:iam::{DATA}:role/rdsvend-reader", "the trust policy names only the service's principals"),
    ("operator", f"arn:aws:iam::{DATA}:role/no-such-role", "the role does not exist"),
    ("execution", "arn:aws:iam::333333333333:role/rdsvend-reader",
     "trusted there, but the function's own policy does not allow it"),
])
def test_the_local_sts_refuses_assume_role_as_sts_does(org: Org, who: str, role: str, why: str) -> None:
    from botocore.exceptions import ClientError

    keys = org.info.seeded.execution if who == "execution" else org.info.seeded.callers[who]
    sts = keys.session(org.info.region).client("sts", endpoint_url=org.info.moto_url)
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=role, RoleSessionName="e2e-test")
    assert err.value.response["Error"]["Code"] == "AccessDenied", why
    assert f"not authorized to perform: sts:AssumeRole on resource: {role}" in err.value.response["Error"]["Message"]


def test_discover_reports_an_account_whose_role_cannot_be_assumed_and_exits_1(org: Org) -> None:
    done = rdsvend(org.operator, "discover", "--format", "json")  # every account, the management one too
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr
    statuses = {a["account"]: (a["status"], a["error"]) for a in json.loads(done.stdout)["accounts"]}
    status, error = statuses.pop("111111111111")  # no reader role in the management account
    assert status == "error" and "AccessDenied" in error and "rdsvend-reader" in error
    assert {s for s, _e in statuses.values()} == {"ok"}


# -- the fault matrix, applied to the second account's database --------------------------------------

@contextlib.contextmanager
def _undo(action: Callable[[], object]) -> Iterator[None]:
    try:
        yield
    finally:
        action()


def test_rds_iam_revoked(org: Org) -> None:
    org.sql("REVOKE rds_iam FROM billing_app")
    with _undo(lambda: org.sql("GRANT rds_iam TO billing_app")):
        report = org.run()
    assert org.new_problems(report) == {(APP, "db.rds_iam"): "fail"}
    assert check(report, APP, "db.rds_iam").fix == "GRANT rds_iam TO billing_app;"


def test_iam_auth_disabled_on_the_instance(org: Org) -> None:
    org.rds.modify_db_instance(DBInstanceIdentifier=DB, EnableIAMDatabaseAuthentication=False, ApplyImmediately=True)
    with _undo(lambda: org.rds.modify_db_instance(DBInstanceIdentifier=DB, EnableIAMDatabaseAuthentication=True,
                                                  ApplyImmediately=True)):
        report = org.run()
    assert org.new_problems(report) == {(APP, "rds.iam_auth_enabled"): "fail"}


def test_scp_denying_rds_db_on_the_data_ou(org: Org) -> None:
    doc = {"Version": "2012-10-17", "Statement": [
        {"Sid": "NoDatabaseLogins", "Effect": "Deny", "Action": "rds-db:*", "Resource": "*"}]}
    policy_id = org.orgs.create_policy(Name="DenyRdsDbData", Description="canary fault", Type="SERVICE_CONTROL_POLICY",
                                       Content=json.dumps(doc))["Policy"]["PolicySummary"]["Id"]
    ou = org.info.seeded.units["Data"]
    org.orgs.attach_policy(PolicyId=policy_id, TargetId=ou)
    try:
        report = org.run()
    finally:
        org.orgs.detach_policy(PolicyId=policy_id, TargetId=ou)
        org.orgs.delete_policy(PolicyId=policy_id)
    assert org.new_problems(report) == {(APP, "org.scp_allows"): "fail"}
    message = check(report, APP, "org.scp_allows").message
    assert policy_id in message and "NoDatabaseLogins" in message and "OU Data" in message


def test_signer_policy_built_from_the_instance_name(org: Org) -> None:
    arn = f"arn:aws:iam::{DATA}:policy/rdsvend-signer-rds-connect"
    original = org.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    doc = org.iam.get_policy_version(PolicyArn=arn, VersionId=original)["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    resource_id = org.info.databases[DB]["resource_id"]
    wrong = json.loads(json.dumps(doc).replace(resource_id, DB))
    version = org.iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(wrong),
                                            SetAsDefault=True)["PolicyVersion"]["VersionId"]
    try:
        report = org.run()
    finally:
        org.iam.set_default_policy_version(PolicyArn=arn, VersionId=original)
        org.iam.delete_policy_version(PolicyArn=arn, VersionId=version)
    assert org.new_problems(report) == {(APP, "iam.signer_allows"): "fail"}
    result = check(report, APP, "iam.signer_allows")
    assert f"dbuser:{DB}/billing_app" in result.fix and f"dbuser:{resource_id}/billing_app" in result.fix


def test_rds_ad_granted_as_well(org: Org) -> None:
    org.sql("GRANT rds_ad TO billing_app")
    with _undo(lambda: org.sql("REVOKE rds_ad FROM billing_app")):
        report = org.run()
    assert org.new_problems(report) == {(APP, "db.auth_conflict"): "fail"}


@pytest.mark.parametrize("fault, undo, words", [
    ("ALTER ROLE billing_app CREATEROLE", "ALTER ROLE billing_app NOCREATEROLE", "can create roles"),
    ("ALTER ROLE billing_app SUPERUSER", "ALTER ROLE billing_app NOSUPERUSER", "is superuser"),
    ("CREATE SCHEMA app_private AUTHORIZATION billing_app", "DROP SCHEMA app_private", "owns schema app_private"),
])
def test_service_user_with_too_much_privilege(org: Org, fault: str, undo: str, words: str) -> None:
    org.sql(fault)
    with _undo(lambda: org.sql(undo)):
        report = org.run()
    assert org.new_problems(report) == {(APP, "db.tier"): "fail"}
    assert words in check(report, APP, "db.tier").message


def test_database_stopped(org: Org) -> None:
    org.rds.stop_db_instance(DBInstanceIdentifier=DB)
    with _undo(lambda: org.rds.start_db_instance(DBInstanceIdentifier=DB)):
        report = org.run()
    assert org.new_problems(report) == {(APP, "rds.found"): "fail"}
    assert "stopped" in check(report, APP, "rds.found").message
    assert check(report, APP, "db.connect").status == "skip"
