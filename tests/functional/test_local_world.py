"""Seeding moto (server mode, in this process) from policies/world.yaml."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from chalicelib.policy.loader import load_policy_text
from devtools.local.aws import MotoSecretLookup, MotoServer, org_id_of, seed_world
from devtools.local.seed import SeededWorld
from devtools.local.world import DEFAULT_WORLD, World, WorldError, load_world, load_world_text
from tests.support.local_world import client_as, local_access_text, management_client, member_client

pytestmark = pytest.mark.e2e  # starts a server: not in the fast tier

DB_PORT = 45432


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
        yield seed_world(world, url, db_host="localhost", db_port=DB_PORT, master_password="not-used-locally")
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()


def test_organization_has_the_service_account_under_an_ou(seeded: SeededWorld, world: World) -> None:
    member = member_client(seeded, "222222222222", "organizations")
    org = member.describe_organization()["Organization"]
    assert org["Id"] == "o-rdsvend001"
    assert org["MasterAccountId"] == "111111111111"
    orgs = management_client(seeded, "organizations")
    parents = orgs.list_parents(ChildId="222222222222")["Parents"]
    assert parents == [{"Id": seeded.units["Services"], "Type": "ORGANIZATIONAL_UNIT"}]
    assert orgs.list_parents(ChildId=seeded.units["Services"])["Parents"][0]["Id"] == seeded.root_id
    accounts = {a["Id"] for a in orgs.list_accounts()["Accounts"]}
    assert {"111111111111", "222222222222", "333333333333"} <= accounts


def test_scps_are_the_default_allow_plus_one_that_leaves_rds_db_alone(seeded: SeededWorld) -> None:
    orgs = management_client(seeded, "organizations")
    on_ou = orgs.list_policies_for_target(TargetId=seeded.units["Services"], Filter="SERVICE_CONTROL_POLICY")
    names = {p["Name"] for p in on_ou["Policies"]}
    assert "DenyLeaveOrganization" in names
    on_root = orgs.list_policies_for_target(TargetId=seeded.root_id, Filter="SERVICE_CONTROL_POLICY")
    assert {p["Name"] for p in on_root["Policies"]} == {"FullAWSAccess"}
    content = orgs.describe_policy(PolicyId=seeded.scps["DenyLeaveOrganization"])["Policy"]["Content"]
    assert "rds-db" not in content and "organizations:LeaveOrganization" in content


def test_signer_role_may_connect_exactly_as_the_declared_iam_users(seeded: SeededWorld, world: World) -> None:
    iam = member_client(seeded, "222222222222", "iam")
    attached = [p for p in iam.list_attached_role_policies(RoleName="rdsvend-signer")["AttachedPolicies"]
                if p["PolicyName"].endswith("-rds-connect")]
    assert len(attached) == 1
    policy = iam.get_policy(PolicyArn=attached[0]["PolicyArn"])["Policy"]
    doc = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    document = doc["Document"] if isinstance(doc["Document"], dict) else json.loads(doc["Document"])
    (statement,) = document["Statement"]
    instance = seeded.instances["orders-local"]
    assert instance.resource_id.startswith("db-")
    assert statement["Action"] == "rds-db:connect"
    shop = seeded.instances["shop-local"]  # the MySQL-family database the same signer serves
    orders_prx, shop_prx = (seeded.proxies[p].resource_id for p in ("orders-proxy", "shop-proxy"))  # leg 1
    assert sorted(statement["Resource"]) == sorted(
        [f"arn:aws:rds-db:us-east-1:222222222222:dbuser:{rid}/{u}" for u in ("orders_app", "orders_owner")
         for rid in (instance.resource_id, orders_prx)]
        + [f"arn:aws:rds-db:us-east-1:222222222222:dbuser:{rid}/{u}" for u in ("shop_app", "shop_owner")
           for rid in (shop.resource_id, shop_prx)])
    trust = iam.get_role(RoleName="rdsvend-signer")["Role"]["AssumeRolePolicyDocument"]
    trust = trust if isinstance(trust, dict) else json.loads(trust)
    # The function signs; the operator may too (its canary logs in as the scheduled one does).
    assert world.operator is not None
    assert trust["Statement"][0]["Principal"] == {"AWS": [world.execution_role_arn,
                                                          world.operator.arn]}


def test_proxies_stand_before_their_targets_and_their_role_may_connect_to_them(seeded: SeededWorld) -> None:
    rds = client_as(seeded, seeded.execution, "rds")
    proxies = {p["DBProxyName"]: p for p in rds.describe_db_proxies()["DBProxies"]}
    assert set(proxies) == {"orders-proxy", "shop-proxy"}
    orders = proxies["orders-proxy"]
    assert (orders["Endpoint"], orders["DefaultAuthScheme"], orders["EngineFamily"]) == (
        seeded.proxies["orders-proxy"].host, "IAM_AUTH", "POSTGRESQL")
    assert orders["RoleArn"] == "arn:aws:iam::222222222222:role/rdsvend-proxy"
    assert orders["Auth"][0]["IAMAuth"] == "REQUIRED"
    assert orders["DBProxyArn"].endswith(":" + seeded.proxies["orders-proxy"].resource_id)
    (target,) = rds.describe_db_proxy_targets(DBProxyName="orders-proxy")["Targets"]
    assert (target["RdsResourceId"], target["TargetHealth"]["State"]) == ("orders-local", "AVAILABLE")
    # leg 2: the proxy's role may connect as the targets' IAM users, on their db- ids
    iam = member_client(seeded, "222222222222", "iam")
    (attached,) = iam.list_attached_role_policies(RoleName="rdsvend-proxy")["AttachedPolicies"]
    policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
    doc = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    document = doc["Document"] if isinstance(doc["Document"], dict) else json.loads(doc["Document"])
    resources = document["Statement"][0]["Resource"]
    assert f"arn:aws:rds-db:us-east-1:222222222222:dbuser:{seeded.instances['orders-local'].resource_id}/orders_app" \
        in resources
    assert not any(":dbuser:prx-" in r for r in resources)


def test_instance_has_iam_auth_and_points_at_the_local_postgres(seeded: SeededWorld) -> None:
    rds = client_as(seeded, seeded.execution, "rds")
    db, shop = rds.describe_db_instances()["DBInstances"]
    assert db["DBInstanceIdentifier"] == "orders-local"
    assert db["IAMDatabaseAuthenticationEnabled"] is True
    assert db["Endpoint"] == {"Address": "localhost", "Port": DB_PORT}
    assert db["DbiResourceId"] == seeded.instances["orders-local"].resource_id
    assert (shop["DBInstanceIdentifier"], shop["Engine"], shop["MasterUsername"]) == ("shop-local", "mariadb", "admin")
    assert shop["IAMDatabaseAuthenticationEnabled"] is True


def test_each_account_sees_only_its_own_resources(seeded: SeededWorld) -> None:
    workloads_rds = member_client(seeded, "333333333333", "rds")
    assert workloads_rds.describe_db_instances()["DBInstances"] == []
    workloads_iam = member_client(seeded, "333333333333", "iam")
    assert "rdsvend-signer" not in {r["RoleName"] for r in workloads_iam.list_roles()["Roles"]}
    service_iam = member_client(seeded, "222222222222", "iam")
    assert {u["UserName"] for u in service_iam.list_users()["Users"]} == {"rdsvend-operator"}
    assert {u["UserName"] for u in workloads_iam.list_users()["Users"]} == {"orders-api", "reporting-job", "dba-lead"}


def test_credentials_act_in_their_own_accounts(seeded: SeededWorld) -> None:
    allowed = client_as(seeded, seeded.callers["allowed"], "sts").get_caller_identity()
    assert allowed["Arn"] == "arn:aws:iam::333333333333:user/orders-api"
    denied = client_as(seeded, seeded.callers["denied"], "sts").get_caller_identity()
    assert denied["Arn"] == "arn:aws:iam::333333333333:user/reporting-job"
    execution = client_as(seeded, seeded.execution, "sts").get_caller_identity()
    assert execution["Account"] == "222222222222"
    assert execution["Arn"].startswith("arn:aws:sts::222222222222:assumed-role/rdsvend-function/")


def test_secret_lookup_knows_long_term_keys_and_session_credentials(seeded: SeededWorld) -> None:
    lookup = MotoSecretLookup()
    caller = seeded.callers["allowed"]
    found = lookup.secret_for(caller.access_key_id)
    assert found is not None
    assert (found.secret_key, found.session_token, found.principal_arn, found.account) == (
        caller.secret_access_key, None, caller.arn, "333333333333")
    user_id = member_client(seeded, "333333333333", "iam").get_user(UserName="orders-api")["User"]["UserId"]
    assert lookup.caller_id(found) == user_id

    session = lookup.secret_for(seeded.execution.access_key_id)
    assert session is not None
    assert session.session_token == seeded.execution.session_token
    assert session.principal_arn == seeded.execution.arn
    role_id = member_client(seeded, "222222222222", "iam").get_role(RoleName="rdsvend-function")["Role"]["RoleId"]
    assert lookup.caller_id(session) == f"{role_id}:rdsvend-local-function"

    assert lookup.secret_for("AKIAUNKNOWNUNKNOWN00") is None
    assert secret_free(repr(found), caller.secret_access_key)


def test_secret_lookup_forgets_a_deleted_key(seeded: SeededWorld) -> None:
    iam = member_client(seeded, "333333333333", "iam")
    key = iam.create_access_key(UserName="reporting-job")["AccessKey"]
    lookup = MotoSecretLookup()
    assert lookup.secret_for(key["AccessKeyId"]) is not None
    iam.update_access_key(UserName="reporting-job", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    assert lookup.secret_for(key["AccessKeyId"]) is None
    iam.delete_access_key(UserName="reporting-job", AccessKeyId=key["AccessKeyId"])
    assert lookup.secret_for(key["AccessKeyId"]) is None


def test_org_id_of_accounts(seeded: SeededWorld) -> None:
    assert org_id_of("222222222222") == "o-rdsvend001"
    assert org_id_of("333333333333") == "o-rdsvend001"
    assert org_id_of("111111111111") == "o-rdsvend001"
    assert org_id_of("999999999999") is None


def test_access_policy_goes_with_the_world(world: World) -> None:
    policy = load_policy_text(local_access_text(world), "local-access.yaml")
    db = policy.databases["orders-local"]
    account, spec = world.database("orders-local")
    assert db.signer_role == world.signer_role_arn
    assert {u.name: (u.auth, u.tier) for u in db.users.values()} == {
        u.name: (u.auth, u.tier) for u in spec.users.values()}
    rule = next(r for r in policy.rules if r.id == "orders-api")
    assert rule.principals == (world.allowed_caller.arn,)
    assert rule.conditions.org_ids == (world.organization.id,)
    assert world.denied_caller.arn not in rule.principals


def secret_free(text: str, secret: str) -> bool:
    return secret not in text


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace("  id: o-rdsvend001", "  id: o-bad"), "organization.id"),
    (lambda t: t.replace("  account: \"222222222222\"\n  execution_role",
                         "  account: \"111111111111\"\n  execution_role"), "service.account"),
    (lambda t: t.replace("scps: [DenyLeaveOrganization]", "scps: [NoSuchScp]", 1), "organization.units.Services.scps"),
    (lambda t: t.replace("rds_connect: [orders-local, shop-local, orders-proxy", "rds_connect: [orders-elsewhere"),
     "accounts.222222222222.roles.rdsvend-signer.rds_connect"),
    (lambda t: t.replace("orders-proxy: {target: orders-local,", "orders-proxy: {target: orders-gone,"),
     "accounts.222222222222.proxies.orders-proxy.target"),
    (lambda t: t.replace("orders-proxy: {target: orders-local, role: rdsvend-proxy}",
                         "orders-proxy: {target: orders-local, role: nobody}"),
     "accounts.222222222222.proxies.orders-proxy.role"),
    (lambda t: t.replace("orders-proxy: {target: orders-local, role: rdsvend-proxy}",
                         "orders-proxy: {target: orders-local, role: rdsvend-proxy, auth: secrets}"),
     "accounts.222222222222.proxies.orders-proxy.auth"),
    (lambda t: t.replace("orders-proxy: {target: orders-local, role: rdsvend-proxy}",
                         "orders-proxy: {target: orders-local, role: rdsvend-proxy, port: 1}"),
     "accounts.222222222222.proxies.orders-proxy"),
    (lambda t: t.replace("engine: postgres\n        engine_version", "engine: mysql\n        engine_version"),
     "accounts.222222222222.databases.orders-local.engine"),
    (lambda t: t.replace("orders_app: {auth: iam, tier: service-user}", "orders_app: {auth: iam, tiers: x}"),
     "accounts.222222222222.databases.orders-local.users.orders_app"),
])
def test_bad_world_files_name_the_field(edit: Callable[[str], str], field: str) -> None:
    text = DEFAULT_WORLD.read_text()
    changed = edit(text)
    assert changed != text
    with pytest.raises(WorldError) as err:
        load_world_text(changed, source="w.yaml")
    assert err.value.field == field
    assert str(err.value).startswith("w.yaml, field ")


def test_local_up_refuses_a_bad_world_before_starting_anything(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from devtools.cli.main import cli

    bad = tmp_path / "world.yaml"
    bad.write_text(DEFAULT_WORLD.read_text().replace("  id: o-rdsvend001", "  id: o-bad"))
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["local", "up", "--detach", "--world", str(bad), "--state-dir", str(state)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"rdsvend local: {bad}, field 'organization.id': invalid value 'o-bad'"]
    assert not state.exists()


def test_local_env_without_a_stack_says_so(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from devtools.cli.main import cli

    result = CliRunner().invoke(cli, ["local", "env", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no local stack is running" in result.output


def test_the_dsql_cluster_is_in_the_local_dsql_api_and_the_signer_may_connect_to_it(seeded: SeededWorld) -> None:
    cluster = seeded.dsql["ledger-local"]
    answer = member_client(seeded, "222222222222", "dsql").get_cluster(identifier=cluster.identifier)
    assert answer["status"] == "ACTIVE" and answer["arn"] == cluster.arn
    iam = member_client(seeded, "222222222222", "iam")
    (attached,) = [p for p in iam.list_attached_role_policies(RoleName="rdsvend-ledger-signer")["AttachedPolicies"]
                   if p["PolicyName"].endswith("-dsql-connect")]
    policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
    doc = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    document = doc["Document"] if isinstance(doc["Document"], dict) else json.loads(doc["Document"])
    (statement,) = document["Statement"]
    assert statement["Action"] == ["dsql:DbConnect", "dsql:DbConnectAdmin"]
    assert statement["Resource"] == [cluster.arn]
