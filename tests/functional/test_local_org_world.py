"""The local world as an organization: a second database in a third member account under
another OU, its signer and reader roles, the operator, the organization reader role, and the
Kerberos user's instance joined to a Directory Service directory (moto server, this process).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import requests

from chalicelib.policy.loader import load_policy_text
from devtools.local.aws import MotoServer, seed_world
from devtools.local.directory import provide_aws_managed_policy
from devtools.local.seed import SeededWorld
from devtools.local.sessions import Keys
from devtools.local.world import DEFAULT_WORLD, World, WorldError, load_world, load_world_text
from tests.support.local_world import client_as, local_access_text, management_client, member_client

pytestmark = pytest.mark.e2e  # starts a server: not in the fast tier

DATA = "444444444444"
DB_NOT_HERE = "billing-local"
SERVICE = "222222222222"


@pytest.fixture(scope="module")
def world() -> World:
    return load_world()


@pytest.fixture(scope="module")
def seeded(world: World) -> Iterator[SeededWorld]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = MotoServer()
    url = server.start()
    requests.post(f"{url}/moto-api/reset", timeout=10)
    try:
        ports = {spec.identifier: 45001 + i for i, (_account, spec) in enumerate(world.databases())}
        yield seed_world(world, url, db_host="localhost", db_port=ports, master_password="not-used-locally")
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()



def _assumed(seeded: SeededWorld, keys: Keys, role_arn: str, service: str) -> Any:
    creds = client_as(seeded, keys, "sts").assume_role(RoleArn=role_arn, RoleSessionName="test")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"], region_name=seeded.region,
    ).client(service, endpoint_url=seeded.endpoint_url)


def test_the_second_database_lives_in_its_own_account_under_another_ou(seeded: SeededWorld) -> None:
    orgs = management_client(seeded, "organizations")
    assert orgs.list_parents(ChildId=DATA)["Parents"] == [{"Id": seeded.units["Data"], "Type": "ORGANIZATIONAL_UNIT"}]
    assert seeded.units["Data"] != seeded.units["Services"]
    billing = seeded.instances["billing-local"]
    assert billing.account == DATA and billing.port != seeded.instances["orders-local"].port
    # Its own resource id (moto alone would give every instance the same one).
    assert billing.resource_id != seeded.instances["orders-local"].resource_id
    service_ids = {d["DBInstanceIdentifier"] for d in member_client(seeded, SERVICE, "rds").describe_db_instances()[
        "DBInstances"]}
    assert "orders-local" in service_ids and DB_NOT_HERE not in service_ids
    (db,) = member_client(seeded, DATA, "rds").describe_db_instances()["DBInstances"]
    assert db["DBInstanceIdentifier"] == "billing-local" and db["IAMDatabaseAuthenticationEnabled"] is True
    assert db["DbiResourceId"] == billing.resource_id


def test_the_second_signer_may_connect_exactly_as_its_declared_users(seeded: SeededWorld) -> None:
    iam = member_client(seeded, DATA, "iam")
    (attached,) = iam.list_attached_role_policies(RoleName="rdsvend-signer")["AttachedPolicies"]
    policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
    version = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
    document = version["PolicyVersion"]["Document"]
    document = document if isinstance(document, dict) else json.loads(document)
    billing = seeded.instances["billing-local"]
    assert document["Statement"][0]["Resource"] == [billing.dbuser_arn("billing_app")]


def test_the_reader_role_is_assumable_by_the_function_and_the_operator_and_reads_rds(seeded: SeededWorld) -> None:
    reader = f"arn:aws:iam::{DATA}:role/rdsvend-reader"
    for keys in (seeded.execution, seeded.callers["operator"]):
        rds = _assumed(seeded, keys, reader, "rds")
        assert [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]] == ["billing-local"]
    iam = member_client(seeded, DATA, "iam")
    role = iam.get_role(RoleName="rdsvend-reader")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = trust if isinstance(trust, dict) else json.loads(trust)
    assert trust["Statement"][0]["Principal"]["AWS"] == [
        f"arn:aws:iam::{SERVICE}:role/rdsvend-function", f"arn:aws:iam::{SERVICE}:user/rdsvend-operator"]
    (doc_name,) = iam.list_role_policies(RoleName="rdsvend-reader")["PolicyNames"]
    doc = iam.get_role_policy(RoleName="rdsvend-reader", PolicyName=doc_name)["PolicyDocument"]
    actions = {a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"rds:Describe*", "iam:GetRole", "iam:ListAttachedRolePolicies", "iam:GetPolicyVersion"} <= actions


def test_the_operator_is_in_the_service_account_and_reads_scps_through_the_org_reader(seeded: SeededWorld,
                                                                                      world: World) -> None:
    operator = seeded.callers["operator"]
    assert world.operator is not None
    assert client_as(seeded, operator, "sts").get_caller_identity()["Arn"] == world.operator.arn
    orgs = _assumed(seeded, operator, "arn:aws:iam::111111111111:role/rdsvend-org-reader", "organizations")
    on_ou = orgs.list_policies_for_target(TargetId=seeded.units["Data"], Filter="SERVICE_CONTROL_POLICY")
    assert {p["Name"] for p in on_ou["Policies"]} == {"FullAWSAccess", "DenyLeaveOrganization"}
    assert {a["Id"] for a in orgs.list_accounts()["Accounts"]} == {"111111111111", SERVICE, "333333333333", DATA}


def test_the_kerberos_users_instance_is_joined_to_a_directory_through_a_directory_role(seeded: SeededWorld) -> None:
    directory_id = seeded.directories["corp.rdsvend.local"]
    ds = member_client(seeded, SERVICE, "ds")
    (directory,) = ds.describe_directories(DirectoryIds=[directory_id])["DirectoryDescriptions"]
    assert (directory["Name"], directory["ShortName"], directory["Type"]) == ("corp.rdsvend.local", "CORP", "MicrosoftAD")
    (db,) = member_client(seeded, SERVICE, "rds").describe_db_instances(
        DBInstanceIdentifier="orders-local")["DBInstances"]
    (membership,) = db["DomainMemberships"]
    assert (membership["Domain"], membership["IAMRoleName"]) == (directory_id, "rds-directory-access")
    iam = member_client(seeded, SERVICE, "iam")
    attached = iam.list_attached_role_policies(RoleName="rds-directory-access")["AttachedPolicies"]
    assert attached == [{"PolicyName": "AmazonRDSDirectoryServiceAccess",
                         "PolicyArn": "arn:aws:iam::aws:policy/service-role/AmazonRDSDirectoryServiceAccess"}]
    trust = iam.get_role(RoleName="rds-directory-access")["Role"]["AssumeRolePolicyDocument"]
    trust = trust if isinstance(trust, dict) else json.loads(trust)
    assert trust["Statement"][0]["Principal"] == {"Service": "rds.amazonaws.com"}


def test_only_real_aws_managed_policies_can_be_provided(seeded: SeededWorld) -> None:
    with pytest.raises(KeyError, match="no AWS managed policy"):
        provide_aws_managed_policy(SERVICE, "arn:aws:iam::aws:policy/service-role/NoSuchPolicyAtAll")
    provide_aws_managed_policy(SERVICE, f"arn:aws:iam::{SERVICE}:policy/customer-managed")  # not AWS's: no-op


def test_the_access_policy_declares_the_foreign_database_with_its_account_and_reader(world: World) -> None:
    policy = load_policy_text(local_access_text(world), "local-access.yaml")
    billing = policy.databases["billing-local"]
    account, spec = world.database("billing-local")
    assert billing.account == account.id == DATA
    assert billing.reader_role == f"arn:aws:iam::{DATA}:role/rdsvend-reader" and billing.reader_role_explicit
    assert billing.signer_role == f"arn:aws:iam::{DATA}:role/rdsvend-signer"
    assert set(billing.users) == set(spec.users)
    # One rule reaches it without source_ips or org_ids: usable by direct invoke.
    (rule,) = [r for r in policy.rules if "billing-local" in r.databases]
    assert rule.principals == (world.allowed_caller.arn,)
    assert rule.conditions.source_ips is None and rule.conditions.org_ids is None


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace("domain: {directory: corp.rdsvend.local,", "domain: {directory: corp.elsewhere.local,"),
     "accounts.222222222222.databases.orders-local.domain.directory"),
    (lambda t: t.replace("iam_role: rds-directory-access}", "iam_role: no-such-role}"),
     "accounts.222222222222.databases.orders-local.domain.iam_role"),
    (lambda t: t.replace("corp.rdsvend.local: {short_name: CORP}", "corp.rdsvend.local: {short_name: bad name}"),
     "accounts.222222222222.directories.corp.rdsvend.local.short_name"),
    (lambda t: t.replace("managed_policies: [arn:aws:iam::aws:policy/service-role/",
                         "managed_policies: [not-an-arn/"),
     "accounts.222222222222.roles.rds-directory-access.managed_policies[0]"),
    (lambda t: t.replace('operator: {account: "222222222222", user: rdsvend-operator}',
                         'operator: {account: "333333333333", user: orders-api}'), "operator.account"),
    (lambda t: t.replace('operator: {account: "222222222222", user: rdsvend-operator}',
                         'operator: {account: "222222222222", user: nobody}'), "operator"),
])
def test_bad_organization_world_files_name_the_field(edit: Callable[[str], str], field: str) -> None:
    text = DEFAULT_WORLD.read_text()
    changed = edit(text)
    assert changed != text
    with pytest.raises(WorldError) as err:
        load_world_text(changed, source="w.yaml")
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_every_member_account_carries_the_reader_role_and_the_management_account_does_not(seeded: SeededWorld) -> None:
    for account in (SERVICE, "333333333333", DATA):
        iam = member_client(seeded, account, "iam")
        assert "rdsvend-reader" in {r["RoleName"] for r in iam.list_roles()["Roles"]}, account
    iam = management_client(seeded, "iam")
    assert {r["RoleName"] for r in iam.list_roles()["Roles"]} == {"rdsvend-org-reader"}
