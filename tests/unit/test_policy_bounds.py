"""Oversized policy documents are refused from their events, before anything is built: one
line naming the file, the limit and where it was crossed, at a small fraction of the memory
that building them took (a 3.8 MB file of 250,000 keys once cost 426 MB and 10 s)."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from chalicelib.errors import PolicyLoadError
from chalicelib.policy.bounds import MAX_DEPTH, MAX_ENTRIES, MAX_NODES
from chalicelib.policy.loader import MAX_POLICY_BYTES, load_policy_file, load_policy_text

SMALL = """version: 1
databases:
  orders-prod:
    engine: postgres
    region: us-east-1
    instance: orders-prod
    users:
      orders_app: {auth: iam}
rules:
  - id: r1
    effect: allow
    principals: ["arn:aws:iam::111122223333:role/app"]
    databases: [orders-prod]
    db_users: [orders_app]
"""


def _refusal(path: Path) -> tuple[str, int]:
    tracemalloc.start()
    try:
        with pytest.raises(PolicyLoadError) as caught:
            load_policy_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(caught.value), peak


def test_a_mapping_of_250000_keys_is_refused_early_naming_file_and_line(tmp_path: Path) -> None:
    hostile = tmp_path / "keys.yaml"
    hostile.write_text("version: 1\ndatabases:\n" + "".join(f"  d{i}: x\n" for i in range(250_000)))
    assert 3_000_000 < hostile.stat().st_size <= MAX_POLICY_BYTES
    message, peak = _refusal(hostile)
    assert message == f"{hostile}: invalid YAML: more than {MAX_ENTRIES} entries in one mapping at line {MAX_ENTRIES + 3}, column 3"
    assert "\n" not in message
    assert peak < 32 * 1024 * 1024  # building it took over 400 MB


def test_many_small_collections_are_refused_at_the_node_limit(tmp_path: Path) -> None:
    spread = tmp_path / "spread.yaml"
    per = 1000  # 1,000 keys per mapping, many mappings: no single collection is too big
    blocks = "".join(f"  m{j}:\n" + "".join(f"    k{i}: v\n" for i in range(per)) for j in range(MAX_NODES // (2 * per) + 2))
    spread.write_text("version: 1\nextra:\n" + blocks)
    message, peak = _refusal(spread)
    assert f"more than {MAX_NODES} YAML nodes" in message and message.startswith(f"{spread}: ")
    assert peak < 32 * 1024 * 1024


def test_deep_nesting_and_aliases_are_refused() -> None:
    deep = "version: 1\nx: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(PolicyLoadError, match=f"nested deeper than {MAX_DEPTH} levels at line 2"):
        load_policy_text(deep, source="deep.yaml")
    with pytest.raises(PolicyLoadError, match="aliases are not allowed in an access policy at line 3"):
        load_policy_text("version: 1\na: &x [1]\nb: *x\n", source="alias.yaml")


def test_ordinary_policies_and_yaml_errors_are_unaffected() -> None:
    assert [r.id for r in load_policy_text(SMALL, source="ok.yaml").rules] == ["r1"]
    with pytest.raises(PolicyLoadError, match="broken.yaml: invalid YAML: .* at line 3"):
        load_policy_text("version: 1\ndatabases: [unclosed\n", source="broken.yaml")
