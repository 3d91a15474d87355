"""The local world file is the one place where a local database's IAM and Kerberos users are
declared: the access policy the stack writes (and checks before it starts) gets them from
there, so adding one is one line in the world file (plus a rule, for a caller to get it)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import load_policy_text
from devtools.local.provision import merged_access_text
from devtools.local.state import REPO_ROOT
from devtools.local.world import World, load_world

WORLD = REPO_ROOT / "policies" / "world.yaml"
ACCESS = REPO_ROOT / "policies" / "local-access.yaml"


def _world_with(tmp_path: Path, user_line: str) -> World:
    text = WORLD.read_text().replace("          orders_owner: {auth: iam, tier: service-admin}\n",
                                     "          orders_owner: {auth: iam, tier: service-admin}\n" + user_line, 1)
    assert user_line in text
    path = tmp_path / "world.yaml"
    path.write_text(text)
    return load_world(path)


def test_a_user_added_to_the_world_only_is_in_the_access_policy_and_may_be_granted(tmp_path: Path) -> None:
    world = _world_with(tmp_path, "          orders_reports: {auth: iam, tier: service-user}\n")
    access = tmp_path / "access.yaml"
    access.write_text(ACCESS.read_text().replace("    db_users: [orders_app]\n",
                                                 "    db_users: [orders_app, orders_reports]\n", 1))
    policy = load_policy_text(merged_access_text(access, world), source=str(access))
    users = policy.databases["orders-local"].users
    assert users["orders_reports"].auth == "iam" and users["orders_reports"].tier == "service-user"
    assert "orders_reports" in yaml.safe_load(merged_access_text(access, world))["rules"][0]["db_users"]


def test_the_template_s_own_entries_win_and_nothing_added_keeps_its_text(tmp_path: Path) -> None:
    world = load_world(WORLD)
    assert merged_access_text(ACCESS, world) == ACCESS.read_text()  # it lists every world user already


def test_a_template_that_does_not_parse_is_still_reported_by_the_loader(tmp_path: Path) -> None:
    broken = tmp_path / "access.yaml"
    broken.write_text("version: 1\ndatabases: [unclosed\n")
    with pytest.raises(PolicyLoadError):
        load_policy_text(merged_access_text(broken, load_world(WORLD)), source=str(broken))
