"""The canary for a database in a member account (moto organization, two accounts).

RDS and the signer role's IAM policies are read through the database's reader role; SCPs
through the organization (own credentials here, the management account). Without a reader
role the checks still run, and say which account they searched and as whom. The database
server itself is the in-memory one (tests/support): these tests are about the AWS reads.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import Result
from moto import mock_aws

from chalicelib.aws.probe import AwsClients
from chalicelib.canary.accounts import AccountReaders
from chalicelib.canary.checks_kerberos import InMemoryDirectoryRoleFacts
from chalicelib.canary.checks_rds import BotoRdsFacts
from chalicelib.canary.iam_facts import LiveConnectEvaluator
from chalicelib.canary.model import CheckResult
from chalicelib.canary.target import run_target
from chalicelib.canary.target_run import CanaryDeps, Deadline
from chalicelib.engines.postgres_catalog import RoleFacts
from chalicelib.errors import ProbeError
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy
from tests.support.aws import record_calls
from tests.support.canary_fakes import CountingTokens, FixedSigner, MemoryConnector, MemoryDatabase

REGION = "us-east-1"
SERVICE = "123456789012"  # moto's default account: the canary's own credentials


@pytest.fixture
def org(aws_env: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """root -> OU Data -> member account with the instance, the signer role and the reader role."""
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        orgs = session.client("organizations")
        orgs.create_organization(FeatureSet="ALL")
        root = orgs.list_roots()["Roots"][0]["Id"]
        ou = orgs.create_organizational_unit(ParentId=root, Name="Data")["OrganizationalUnit"]["Id"]
        account = orgs.create_account(AccountName="data", Email="data@example.com")["CreateAccountStatus"]["AccountId"]
        orgs.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
        creds = session.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="seed")["Credentials"]
        member = boto3.session.Session(aws_access_key_id=creds["AccessKeyId"],
                                       aws_secret_access_key=creds["SecretAccessKey"],
                                       aws_session_token=creds["SessionToken"], region_name=REGION)
        instance = member.client("rds").create_db_instance(
            DBInstanceIdentifier="ledger-prod", Engine="postgres", DBInstanceClass="db.t4g.micro",
            MasterUsername="admin", MasterUserPassword="x" * 12, AllocatedStorage=20,
            EnableIAMDatabaseAuthentication=True)["DBInstance"]
        iam = member.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{SERVICE}:root"}, "Action": "sts:AssumeRole"}]})
        for name in ("rdsvend-signer", "rdsvend-reader"):
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        dbuser = f"arn:aws:rds-db:{REGION}:{account}:dbuser:{instance['DbiResourceId']}/ledger_app"
        iam.put_role_policy(RoleName="rdsvend-signer", PolicyName="connect", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "rds-db:connect", "Resource": dbuser}]}))
        yield {"session": session, "account": account, "instance": instance, "dbuser": dbuser}


def policy(account: str, *extra: str, service_account: str | None = None) -> AccessPolicy:
    lines = ["version: 1", "databases:", "  ledger:", "    engine: postgres", f"    region: {REGION}",
             "    instance: ledger-prod", f"    signer_role: arn:aws:iam::{account}:role/rdsvend-signer",
             *(f"    {line}" for line in extra),
             "    users:", "      ledger_app: {auth: iam}",
             "rules:", "  - id: r", "    effect: allow", f'    principals: ["arn:aws:iam::{SERVICE}:role/x"]',
             "    databases: [ledger]", "    db_users: [ledger_app]"]
    return load_policy_text("\n".join(lines) + "\n", "orgs.yaml", service_account=service_account)


def run(org: dict[str, Any], loaded: AccessPolicy) -> dict[str, CheckResult]:
    clients = AwsClients(session=org["session"])
    readers = AccountReaders(loaded, clients)
    instance = org["instance"]
    server = MemoryDatabase(roles={"ledger_app": RoleFacts(role="ledger_app", exists=True,
                                                           rds_iam_path=("rds_iam",))})
    deps = CanaryDeps(
        rds=BotoRdsFacts(clients, readers),
        connect=LiveConnectEvaluator(iam_client=clients.client("iam"),
                                     org_client=org["session"].client("organizations"), iam_for=readers.iam_for),
        directory=InMemoryDirectoryRoleFacts({}),
        tokens=CountingTokens(),
        db=MemoryConnector({(instance["Endpoint"]["Address"], instance["Endpoint"]["Port"]): server}),
        signer=FixedSigner(),
    )
    db = loaded.databases["ledger"]
    report = run_target(db, db.users["ledger_app"], deps, Deadline.after(30))
    return {c.id: c for c in report.checks}


def test_reader_role_lets_the_canary_see_rds_and_the_signer_in_the_member_account(org: dict[str, Any]) -> None:
    account = org["account"]
    checks = run(org, policy(account, f"reader_role: arn:aws:iam::{account}:role/rdsvend-reader"))
    assert checks["rds.found"].status == "pass", checks["rds.found"].message
    assert checks["rds.found"].details["resource_id"] == org["instance"]["DbiResourceId"]
    assert checks["iam.signer_allows"].status == "pass", checks["iam.signer_allows"].message
    assert checks["iam.signer_allows"].details["dbuser_arn"] == org["dbuser"]
    assert checks["org.scp_allows"].status == "pass", checks["org.scp_allows"].message
    assert checks["db.connect"].status == "pass"


def test_default_reader_role_name_is_used_when_the_canary_is_elsewhere(org: dict[str, Any]) -> None:
    account = org["account"]
    lines = ["defaults:", "  reader_role_name: rdsvend-reader"]
    loaded = load_policy_text("\n".join(lines) + "\n" + _text(account), "orgs.yaml")
    assert loaded.databases["ledger"].reader_role == f"arn:aws:iam::{account}:role/rdsvend-reader"
    checks = run(org, loaded)
    assert checks["rds.found"].status == "pass"
    assert checks["iam.signer_allows"].status == "pass"


def test_without_a_reader_role_the_checks_say_where_they_looked(org: dict[str, Any]) -> None:
    account = org["account"]
    checks = run(org, policy(account))  # the canary's own credentials: the service account
    found = checks["rds.found"]
    assert found.status == "fail"
    assert found.message == (
        f"instance 'ledger-prod' in {REGION} was not found (searched account {SERVICE} as "
        f"arn:aws:sts::{SERVICE}:user/moto; the database is declared in account {account})")
    assert "set reader_role" in found.fix and "rdsvend local env --as operator" in found.fix
    assert "fix the instance identifier" not in found.fix  # the identifier is right
    assert found.details["searched_account"] == SERVICE and found.details["declared_account"] == account


def test_a_signer_role_iam_cannot_show_is_reported_with_the_account_searched(org: dict[str, Any]) -> None:
    account = org["account"]
    clients = AwsClients(session=org["session"])
    loaded = policy(account)
    evaluator = LiveConnectEvaluator(iam_client=clients.client("iam"),
                                     org_client=org["session"].client("organizations"),
                                     iam_for=AccountReaders(loaded, clients).iam_for)
    with pytest.raises(ProbeError) as caught:
        evaluator.evaluate(f"arn:aws:iam::{account}:role/rdsvend-signer", org["dbuser"], account_id=account)
    cause = caught.value.cause
    assert caught.value.code == "NoSuchEntity"
    assert (f"(searched account {SERVICE} as arn:aws:sts::{SERVICE}:user/moto; the signer role is declared in "
            f"account {account}; run with credentials that can read account {account}") in cause


def test_a_reader_role_that_cannot_be_assumed_is_an_error_naming_the_role(org: dict[str, Any],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    account = org["account"]
    reader = f"arn:aws:iam::{account}:role/rdsvend-reader"
    from botocore.exceptions import ClientError

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params.get("RoleArn") == reader:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, "AssumeRole")

    org["session"].events.register("provide-client-params.sts.AssumeRole", refuse)
    checks = run(org, policy(account, f"reader_role: {reader}"))
    found = checks["rds.found"]
    assert found.status == "error"  # never a pass, never a plain "does not exist"
    assert f"could not assume reader role '{reader}' as arn:aws:sts::{SERVICE}:user/moto" in found.message
    assert "AccessDenied" in found.message
    assert found.fix.startswith(f"let arn:aws:sts::{SERVICE}:user/moto assume {reader} (the role's trust policy")


def _text(account: str) -> str:
    return "\n".join(["version: 1", "databases:", "  ledger:", "    engine: postgres", f"    region: {REGION}",
                      "    instance: ledger-prod", f"    signer_role: arn:aws:iam::{account}:role/rdsvend-signer",
                      "    users:", "      ledger_app: {auth: iam}",
                      "rules:", "  - id: r", "    effect: allow", f'    principals: ["arn:aws:iam::{SERVICE}:role/x"]',
                      "    databases: [ledger]", "    db_users: [ledger_app]"]) + "\n"


# ------------------------------------------------------------------ policy render and doctor


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "access.yaml"
    path.write_text(text)
    return path


def _cli(*args: str) -> Result:
    from click.testing import CliRunner

    from devtools.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_render_reads_the_member_account_through_the_reader_role(org: dict[str, Any], tmp_path: Path) -> None:
    account = org["account"]
    text = _text(account).replace("    users:", f"    reader_role: arn:aws:iam::{account}:role/rdsvend-reader\n    users:")
    result = _cli("policy", "render", str(_write(tmp_path, text)))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dbuser_arns"] == [org["dbuser"]]


def test_render_with_a_declared_resource_id_reads_nothing_from_rds(org: dict[str, Any], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_calls(monkeypatch, "rds")
    account = org["account"]
    text = _text(account).replace("    users:", "    resource_id: db-DECLARED0000000000000000\n    users:")
    result = _cli("policy", "render", str(_write(tmp_path, text)))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dbuser_arns"] == [
        f"arn:aws:rds-db:{REGION}:{account}:dbuser:db-DECLARED0000000000000000/ledger_app"]
    assert calls == []


def test_render_without_a_way_in_says_which_account_it_searched(org: dict[str, Any], tmp_path: Path) -> None:
    account = org["account"]
    result = _cli("policy", "render", str(_write(tmp_path, _text(account))))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert (f"rds has no instance 'ledger-prod' (DBInstanceNotFound; searched account {SERVICE} as "
            f"arn:aws:sts::{SERVICE}:user/moto; the database is declared in account {account})") in lines[0]
    assert "set reader_role" in lines[0]


def test_doctor_with_keys_of_another_account_names_the_account_it_searched(org: dict[str, Any], tmp_path: Path) -> None:
    account = org["account"]
    result = _cli("doctor", "ledger", "ledger_app", "--policy", str(_write(tmp_path, _text(account))))
    assert result.exit_code == 1
    words = " ".join(result.output.split())  # doctor wraps its explanations
    assert (f"FAIL rds.found: instance 'ledger-prod' in {REGION} was not found (searched account {SERVICE} as "
            f"arn:aws:sts::{SERVICE}:user/moto; the database is declared in account {account})") in words
    assert (f"Fix: run with credentials that can read account {account} (the operator's: locally, rdsvend local "
            "env --as operator), or set reader_role") in words
    assert "does not exist" not in words


def test_rds_access_denied_names_the_principal_and_account_that_were_refused(org: dict[str, Any],
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's IAM enforcement: the canary's own user may call STS but not RDS."""
    from moto.core import set_initial_no_auth_action_count

    iam = org["session"].client("iam")
    iam.create_user(UserName="alice")
    iam.put_user_policy(UserName="alice", PolicyName="sts-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}))
    keys = iam.create_access_key(UserName="alice")["AccessKey"]
    alice = boto3.session.Session(aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
                                  region_name=REGION)
    account = org["account"]

    @set_initial_no_auth_action_count(0)
    def enforced() -> dict[str, CheckResult]:
        return run({**org, "session": alice}, policy(account))

    found = enforced()["rds.found"]
    assert found.status == "error"
    assert "AccessDenied" in found.message
    assert (f"(searched account {SERVICE} as arn:aws:iam::{SERVICE}:user/alice; the database is declared in "
            f"account {account})") in found.message
    assert found.fix.startswith(f"run with credentials that can read account {account}")
    assert keys["SecretAccessKey"] not in found.message + found.fix


def test_directory_role_of_a_member_database_is_read_in_its_account(org: dict[str, Any]) -> None:
    """A Kerberos user's instance in the member account: its directory role is read there,
    through the reader role (the canary's own account has no such role)."""
    account = org["account"]
    creds = org["session"].client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="seed2")["Credentials"]
    member = boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                   aws_session_token=creds["SessionToken"], region_name=REGION)
    iam = member.client("iam")
    iam.create_role(RoleName="rds-directory", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "rds.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    managed = iam.create_policy(PolicyName="AmazonRDSDirectoryServiceAccess", Path="/service-role/",
                                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                    {"Effect": "Allow", "Action": "ds:DescribeDirectories", "Resource": "*"}]}))
    iam.attach_role_policy(RoleName="rds-directory", PolicyArn=managed["Policy"]["Arn"])
    member.client("rds").create_db_instance(
        DBInstanceIdentifier="hr-prod", Engine="postgres", DBInstanceClass="db.t4g.micro", MasterUsername="admin",
        MasterUserPassword="x" * 12, AllocatedStorage=20, Domain="d-1234567890", DomainIAMRoleName="rds-directory")
    text = _text(account).replace("instance: ledger-prod", "instance: hr-prod").replace(
        "ledger_app: {auth: iam}", "ledger_app: {auth: iam}\n      hr_legacy: {auth: kerberos}").replace(
        "    users:", f"    reader_role: arn:aws:iam::{account}:role/rdsvend-reader\n    users:")
    loaded = load_policy_text(text, "orgs.yaml")
    clients = AwsClients(session=org["session"])
    readers = AccountReaders(loaded, clients)
    from chalicelib.canary.checks_kerberos import BotoDirectoryRoleFacts

    deps = CanaryDeps(rds=BotoRdsFacts(clients, readers),
                      connect=LiveConnectEvaluator(iam_client=clients.client("iam"), org_client=None),
                      directory=BotoDirectoryRoleFacts(clients, readers.iam_for), tokens=CountingTokens(),
                      db=MemoryConnector({}), signer=FixedSigner())
    db = loaded.databases["ledger"]
    report = run_target(db, db.users["hr_legacy"], deps, Deadline.after(30))
    checks = {c.id: c for c in report.checks}
    assert checks["rds.domain_joined"].status == "pass", checks["rds.domain_joined"].message
    assert checks["iam.directory_role"].status == "pass", checks["iam.directory_role"].message
    # read with the canary's own credentials instead, the role is not there
    own = BotoDirectoryRoleFacts(clients)
    assert own.describe("rds-directory") is None
