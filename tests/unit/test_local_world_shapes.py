"""A world file whose mapping of names (accounts, users, databases, roles, ...) is a string, a
number or a list gets one line naming that field, never a traceback."""
from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devtools.local.world import DEFAULT_WORLD, WorldError, load_world_text

ACCOUNT_MAPS = ("users", "databases", "roles", "directories", "proxies", "dsql_clusters")


def _name_maps(world: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    """Paths (in the parsed file) of every mapping of names the default world holds."""
    yield ("accounts",)
    yield ("organization", "units")
    yield ("organization", "scps")
    for acct, spec in world["accounts"].items():
        for key in ACCOUNT_MAPS:
            if key in spec:
                yield ("accounts", acct, key)
        for db in spec.get("databases") or {}:
            yield ("accounts", acct, "databases", db, "users")


WORLD = yaml.safe_load(DEFAULT_WORLD.read_text())
PATHS = list(_name_maps(WORLD))


def test_the_default_world_has_each_kind_of_mapping() -> None:
    # the parametrized test below covers every kind of list of names a world file holds
    kinds = {path[-1] for path in PATHS}
    assert kinds >= {"accounts", "units", "scps", "users", "databases", "roles", "proxies", "dsql_clusters"}


@pytest.mark.parametrize("bad", ["bad", 5, ["a", "b"]], ids=["string", "number", "list"])
@pytest.mark.parametrize("path", PATHS, ids=[".".join(p) for p in PATHS])
def test_a_mapping_of_names_that_is_not_a_mapping_is_named(path: tuple[str, ...], bad: object) -> None:
    world = copy.deepcopy(WORLD)
    node = world
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(WorldError) as err:
        load_world_text(yaml.safe_dump(world), source="w.yaml")
    assert err.value.field == ".".join(path)
    assert "must be a mapping" in str(err.value)
    assert "\n" not in str(err.value)
