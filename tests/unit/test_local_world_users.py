"""The local world file is the one place where a local database's users are declared: the
access policy the stack writes (and checks before it starts) gets them from there, so adding
one is one line in the world file (plus a rule, for a caller to get it). A password user comes
with its rotation and the secret the stack seeds for it; a DSQL cluster's roles and its admin
come from the cluster."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy
from devtools.local.provision import merged_access_text
from devtools.local.state import REPO_ROOT
from devtools.local.world import World, WorldError, load_world, load_world_text

WORLD = REPO_ROOT / "policies" / "world.yaml"
ACCESS = REPO_ROOT / "policies" / "local-access.yaml"
OWNER_LINE = "          orders_owner: {auth: iam, tier: service-admin}\n"


def _world_text_with(user_line: str, after: str = OWNER_LINE) -> str:
    text = WORLD.read_text().replace(after, after + user_line, 1)
    assert user_line in text
    return text


def _world_with(tmp_path: Path, user_line: str, after: str = OWNER_LINE) -> World:
    path = tmp_path / "world.yaml"
    path.write_text(_world_text_with(user_line, after))
    return load_world(path)


def _policy(world: World, access: Path = ACCESS) -> AccessPolicy:
    return load_policy_text(merged_access_text(access, world), source=str(access))


def test_a_user_added_to_the_world_only_is_in_the_access_policy_and_may_be_granted(tmp_path: Path) -> None:
    world = _world_with(tmp_path, "          orders_reports: {auth: iam, tier: service-user}\n")
    access = tmp_path / "access.yaml"
    access.write_text(ACCESS.read_text().replace("    db_users: [orders_app]\n",
                                                 "    db_users: [orders_app, orders_reports]\n", 1))
    users = _policy(world, access).databases["orders-local"].users
    assert users["orders_reports"].auth == "iam" and users["orders_reports"].tier == "service-user"
    assert "orders_reports" in yaml.safe_load(merged_access_text(access, world))["rules"][0]["db_users"]


def test_a_password_user_added_to_the_world_only_has_its_rotation_and_the_secret_the_stack_seeds(
    tmp_path: Path,
) -> None:
    world = _world_with(tmp_path, "          audit_batch: {auth: password, tier: service-user, "
                                  "rotation: alternating-users}\n")
    user = _policy(world).databases["orders-local"].users["audit_batch"]
    assert (user.auth, user.tier, user.rotation) == ("password", "service-user", "alternating-users")
    assert user.secret == "arn:aws:secretsmanager:us-east-1:222222222222:secret:rdsvend/orders-local/audit_batch"
    plain = _world_with(tmp_path, "          plain_batch: {auth: password}\n")
    assert _policy(plain).databases["orders-local"].users["plain_batch"].rotation == "single-user"


def test_a_dsql_cluster_s_roles_and_its_admin_come_from_the_world(tmp_path: Path) -> None:
    world = _world_with(tmp_path, "          ledger_audit: {grant: rdsvend-ledger-signer}\n",
                        after="          ledger_app: {grant: rdsvend-ledger-signer}\n")
    assert set(_policy(world).databases["ledger-local"].users) == {"admin", "ledger_app", "ledger_audit"}


def test_the_template_names_no_user_the_world_declares_and_the_stack_s_policy_has_them_all() -> None:
    world = load_world(WORLD)
    template = yaml.safe_load(ACCESS.read_text())["databases"]
    policy = _policy(world)
    for _account, db in world.databases():
        assert "users" not in template[db.identifier], f"{db.identifier}: its users are the world's"
        assert list(policy.databases[db.identifier].users) == list(db.users)
    for _account, cluster in world.dsql_clusters():
        assert "users" not in template[cluster.name]
        assert set(policy.databases[cluster.name].users) == {"admin", *cluster.roles}


def test_an_entry_the_template_gives_wins(tmp_path: Path) -> None:
    access = tmp_path / "access.yaml"
    access.write_text(ACCESS.read_text().replace(
        "    signer_role: arn:aws:iam::222222222222:role/rdsvend-signer\n    # users: from policies/world.yaml\n",
        "    signer_role: arn:aws:iam::222222222222:role/rdsvend-signer\n"
        "    users:\n      orders_app: {auth: iam, tier: service-admin}\n", 1))
    users = _policy(load_world(WORLD), access).databases["orders-local"].users
    assert users["orders_app"].tier == "service-admin"
    assert "ledger_batch" in users  # the rest still from the world


@pytest.mark.parametrize(("line", "message"), [
    ("          orders_x: {auth: iam, rotation: single-user}\n",
     "field 'accounts.222222222222.databases.orders-local.users.orders_x.rotation': 'rotation' is only for "
     "auth: password users, not auth: iam"),
    ("          orders_x: {auth: password, rotation: weekly}\n",
     "field 'accounts.222222222222.databases.orders-local.users.orders_x.rotation': invalid rotation 'weekly'"),
])
def test_a_bad_rotation_in_the_world_names_the_field(line: str, message: str) -> None:
    with pytest.raises(WorldError) as caught:
        load_world_text(_world_text_with(line), source="world.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_template_that_does_not_parse_is_still_reported_by_the_loader(tmp_path: Path) -> None:
    broken = tmp_path / "access.yaml"
    broken.write_text("version: 1\ndatabases: [unclosed\n")
    with pytest.raises(PolicyLoadError):
        load_policy_text(merged_access_text(broken, load_world(WORLD)), source=str(broken))
