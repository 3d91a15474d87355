"""Access policy loading: every load error names the file, the rule and the field."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import MAX_POLICY_BYTES, load_policy_file, load_policy_text
from chalicelib.policy.model import AccessPolicy

REPO = Path(__file__).resolve().parents[2]

BASE = textwrap.dedent(
    """
    version: 1
    databases:
      orders-prod:
        engine: postgres
        region: us-east-1
        instance: orders-prod
        port: 5432
        users:
          orders_app: {auth: iam, tier: service-user}
          etl_legacy: {auth: kerberos}
    rules:
      - id: orders-api
        effect: allow
        principals: ["arn:aws:iam::111122223333:role/orders-api-*"]
        databases: [orders-prod]
        db_users: [orders_app]
    """
)


def load(text: str) -> AccessPolicy:
    return load_policy_text(textwrap.dedent(text), source="test.yaml")


def error_of(text: str) -> PolicyLoadError:
    with pytest.raises(PolicyLoadError) as info:
        load(text)
    return info.value


def test_shipped_example_policy_loads() -> None:
    policy = load_policy_file(REPO / "policies" / "access.yaml")
    assert "orders-prod" in policy.databases
    assert policy.databases["orders-prod"].users["etl_legacy"].auth == "kerberos"
    assert [r.id for r in policy.rules][:1] == ["orders-api"]
    assert policy.rules[0].conditions.org_ids == ("o-abc123def4",)


def test_base_policy_loads_with_defaults() -> None:
    policy = load(BASE)
    db = policy.databases["orders-prod"]
    assert (db.kind, db.identifier, db.port, db.host) == ("instance", "orders-prod", 5432, None)
    assert policy.canary.timeout_seconds == 10 and policy.canary.concurrency == 16
    assert [(d.name, u.name) for d, u in policy.targets()] == [("orders-prod", "orders_app"), ("orders-prod", "etl_legacy")]


def test_unknown_key_in_rule_names_file_rule_and_key() -> None:
    err = error_of(BASE.replace("effect: allow", "effect: allow\n    principls: []"))
    assert str(err) == "test.yaml, rule 'orders-api', field 'rules[0]': unknown key 'principls'"


@pytest.mark.parametrize(
    "replace, expected",
    [
        (("engine: postgres", "engine: oracle"), "field 'databases.orders-prod.engine': invalid engine 'oracle'"),
        (("region: us-east-1", "region: mars"), "invalid region 'mars'"),
        (("port: 5432", "port: 70000"), "field 'databases.orders-prod.port': invalid port '70000'"),
        (("port: 5432", "port: true"), "invalid port 'True'"),
        (("instance: orders-prod", "cluster: a\n    instance: b"), "needs exactly one of 'instance', 'cluster' or 'proxy'"),
        (("{auth: kerberos}", "{auth: ldap}"), "invalid auth 'ldap'"),
        (("tier: service-user", "tier: god"), "invalid tier 'god'"),
        (("users:", "users: {}\n    x:"), "unknown key 'x'"),
        (("orders-prod:\n", "Orders_Prod:\n"), "invalid database name 'Orders_Prod'"),
    ],
)
def test_database_errors(replace: tuple[str, str], expected: str) -> None:
    old, new = replace
    err = error_of(BASE.replace(old, new, 1))
    assert expected in str(err)
    assert str(err).startswith("test.yaml")


def test_duplicate_rule_id() -> None:
    dup = BASE + (
        "  - id: orders-api\n"
        "    effect: deny\n"
        '    principals: ["*"]\n'
        '    databases: ["*"]\n'
        '    db_users: ["*"]\n'
    )
    err = error_of(dup)
    assert "rule 'orders-api'" in str(err) and "duplicate rule id 'orders-api'" in str(err)


def test_duplicate_yaml_key_is_refused() -> None:
    err = error_of(BASE.replace("engine: postgres", "engine: postgres\n    engine: mysql"))
    assert "duplicate key 'engine'" in str(err) and "line" in str(err)


@pytest.mark.parametrize(
    "field, old, new, expected",
    [
        ("databases", "databases: [orders-prod]", "databases: [orders-staging]", "'orders-staging' names no declared database"),
        ("db_users", "db_users: [orders_app]", "db_users: [nobody]", "'nobody' names no user declared"),
        ("db_users", "db_users: [orders_app]", "db_users: []", "must be a non-empty list"),
        ("principals", '"arn:aws:iam::111122223333:role/orders-api-*"', '"orders-api"', "invalid principal ARN pattern 'orders-api'"),
        ("principals", '"arn:aws:iam::111122223333:role/orders-api-*"', '"arn:aws:iam::1234:role/x"', "invalid account"),
        ("principals", '"arn:aws:iam::111122223333:role/orders-api-*"', '"arn:aws:s3:::bucket"', "invalid principal ARN pattern"),
        ("databases", "databases: [orders-prod]", "databases: [orders prod]", "invalid pattern 'orders prod'"),
        ("effect", "effect: allow", "effect: permit", "invalid effect 'permit'"),
    ],
)
def test_rule_errors_name_rule_and_field(field: str, old: str, new: str, expected: str) -> None:
    err = error_of(BASE.replace(old, new))
    assert err.rule == "orders-api" and err.field == field
    assert expected in str(err)


@pytest.mark.parametrize(
    "conditions, field, expected",
    [
        ("{source_ips: [10.0.0.0/33]}", "conditions.source_ips", "invalid CIDR '10.0.0.0/33'"),
        ("{source_ips: [not-an-ip]}", "conditions.source_ips", "invalid CIDR 'not-an-ip'"),
        ("{org_ids: [acme]}", "conditions.org_ids", "invalid organization id 'acme'"),
        ("{org_ids: []}", "conditions.org_ids", "must be a non-empty list"),
        ("{vpc_ids: [vpc-1]}", "conditions", "unknown key 'vpc_ids'"),
    ],
)
def test_condition_errors(conditions: str, field: str, expected: str) -> None:
    err = error_of(BASE + f"    conditions: {conditions}\n")
    assert err.rule == "orders-api" and err.field == field
    assert expected in str(err)


def test_rule_naming_a_kerberos_user_only_still_loads_but_is_not_vendable() -> None:
    policy = load(BASE.replace("db_users: [orders_app]", "db_users: [etl_legacy]"))
    assert not policy.databases["orders-prod"].users["etl_legacy"].vendable


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "policy is empty"),
        ("- a\n- b\n", "must be a mapping, not a list"),
        ("version: 2\ndatabases: {}\nrules: []\n", "unsupported version '2'"),
        ("version: 1\nrules: []\n", "missing key 'databases'"),
        ("databases: {a: [}", "invalid YAML"),
        ("a: &x [1]\nb: *x\n", "aliases are not allowed"),
    ],
)
def test_document_errors(text: str, expected: str) -> None:
    assert expected in str(error_of(text))


def test_billion_laughs_is_refused_without_expanding() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)
    )
    assert "aliases are not allowed" in str(error_of(bomb))


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_POLICY_BYTES + 1))
    with pytest.raises(PolicyLoadError, match="more than"):
        load_policy_file(big)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="cannot read file"):
        load_policy_file(tmp_path / "nope.yaml")
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PolicyLoadError, match="not UTF-8"):
        load_policy_file(junk)


def test_canary_settings_validated() -> None:
    assert "invalid concurrency '0'" in str(error_of(BASE + "canary: {concurrency: 0}\n"))
    policy = load(BASE + "canary: {timeout_seconds: 2.5, concurrency: 4}\n")
    assert (policy.canary.timeout_seconds, policy.canary.concurrency) == (2.5, 4)
