"""Databases in other accounts: ``account``, ``reader_role``, ``resource_id`` and
``defaults.reader_role_name``, and the load errors that keep a foreign database readable."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy

SERVICE = "111111111111"
MEMBER = "222222222222"

TEMPLATE = textwrap.dedent(
    """
    version: 1
    {defaults}
    databases:
      billing-prod:
        engine: postgres
        region: eu-west-1
        cluster: billing
    {extra}
        users:
          billing_app: {{auth: iam}}
    rules:
      - id: billing
        effect: allow
        principals: ["arn:aws:iam::111111111111:role/billing-*"]
        databases: [billing-prod]
        db_users: [billing_app]
    """
)


def policy_text(*lines: str, defaults: str = "") -> str:
    extra = "\n".join(f"    {line}" for line in lines)
    return TEMPLATE.format(defaults=defaults, extra=extra)


def load(*lines: str, defaults: str = "", service_account: str | None = SERVICE) -> AccessPolicy:
    return load_policy_text(policy_text(*lines, defaults=defaults), source="orgs.yaml",
                            service_account=service_account)


def error_of(*lines: str, defaults: str = "", service_account: str | None = SERVICE) -> PolicyLoadError:
    with pytest.raises(PolicyLoadError) as info:
        load(*lines, defaults=defaults, service_account=service_account)
    return info.value


SIGNER = f"signer_role: arn:aws:iam::{MEMBER}:role/rdsvend-signer"
READER = f"reader_role: arn:aws:iam::{MEMBER}:role/rdsvend-reader"
DEFAULTS = "defaults:\n  reader_role_name: rdsvend-reader"


def test_account_defaults_to_the_signer_roles_then_the_services() -> None:
    assert load(SIGNER, READER).databases["billing-prod"].account == MEMBER
    assert load().databases["billing-prod"].account == SERVICE
    assert load(service_account=None).databases["billing-prod"].account is None


def test_explicit_account_and_reader_role_load() -> None:
    policy = load(f'account: "{MEMBER}"', SIGNER, READER, "resource_id: cluster-ABCDEFGHIJKLMNOP")
    db = policy.databases["billing-prod"]
    assert (db.account, db.reader_role, db.resource_id) == (
        MEMBER, f"arn:aws:iam::{MEMBER}:role/rdsvend-reader", "cluster-ABCDEFGHIJKLMNOP")
    assert policy.reader_role_for(db, SERVICE) == db.reader_role
    assert policy.reader_role_for(db, MEMBER) == db.reader_role  # explicit: always used


def test_default_reader_role_name_builds_the_role_in_the_databases_account() -> None:
    policy = load(SIGNER, defaults=DEFAULTS)
    db = policy.databases["billing-prod"]
    assert db.reader_role == f"arn:aws:iam::{MEMBER}:role/rdsvend-reader"
    assert policy.reader_role_for(db, SERVICE) == db.reader_role
    assert policy.reader_role_for(db, MEMBER) is None  # already in the database's account
    assert policy.reader_role_for(db, None) is None


def test_default_reader_role_takes_the_partition_of_the_region() -> None:
    text = policy_text(f'account: "{MEMBER}"', defaults=DEFAULTS).replace("eu-west-1", "cn-north-1")
    db = load_policy_text(text, service_account=SERVICE).databases["billing-prod"]
    assert db.reader_role == f"arn:aws-cn:iam::{MEMBER}:role/rdsvend-reader"


def test_database_in_the_services_account_needs_no_reader() -> None:
    db = load(defaults=DEFAULTS).databases["billing-prod"]
    assert db.account == SERVICE
    assert load(defaults=DEFAULTS).reader_role_for(db, SERVICE) is None


def test_foreign_database_with_host_port_and_resource_id_needs_no_reader() -> None:
    db = load(f'account: "{MEMBER}"', "host: billing.example.internal", "port: 5432",
              "resource_id: cluster-ABCDEFGHIJKLMNOP").databases["billing-prod"]
    assert db.endpoint_declared and db.reader_role is None


def test_signer_role_in_another_account_than_the_database_is_a_load_error() -> None:
    err = error_of('account: "333333333333"', SIGNER)
    assert err.field == "databases.billing-prod.signer_role"
    assert str(err).startswith("orgs.yaml, field 'databases.billing-prod.signer_role': ")
    assert f"is in account {MEMBER}, not the database's account 333333333333" in str(err)


def test_reader_role_in_another_account_than_the_database_is_a_load_error() -> None:
    err = error_of(SIGNER, "reader_role: arn:aws:iam::333333333333:role/rdsvend-reader")
    assert err.field == "databases.billing-prod.reader_role"
    assert f"is in account 333333333333, not the database's account {MEMBER}" in str(err)


def test_reader_role_outside_the_services_account_when_account_defaults_to_it() -> None:
    err = error_of(READER)
    assert err.field == "databases.billing-prod.reader_role"
    assert f"not the database's account {SERVICE}" in str(err)


def test_foreign_database_without_reader_or_endpoint_is_a_load_error() -> None:
    err = error_of(SIGNER, "host: billing.example.internal")
    assert str(err) == (
        f"orgs.yaml, field 'databases.billing-prod.reader_role': the database is in account {MEMBER}, "
        f"not the service's account {SERVICE}: set reader_role (or defaults.reader_role_name) so rdsvend "
        "can read it, or give host, port and resource_id (missing: port, resource_id)")


def test_unknown_service_account_checks_only_what_it_can_judge() -> None:
    db = load(SIGNER, service_account=None).databases["billing-prod"]  # foreign or not: cannot tell
    assert db.account == MEMBER and db.reader_role is None
    assert error_of('account: "333333333333"', SIGNER, service_account=None).field == \
        "databases.billing-prod.signer_role"


@pytest.mark.parametrize(
    "line, field, message",
    [
        ("account: 222222222222", "account", "must be a quoted string of 12 digits, not the number 222222222222"),
        ('account: "2222"', "account", "invalid account '2222' (expected 12 digits)"),
        ('account: "22222222222x"', "account", "invalid account '22222222222x' (expected 12 digits)"),
        ("account: [1]", "account", "must be a string, not a list"),
        ('account: "２２２２２２２２２２２２"', "account", "(expected 12 digits)"),
        ("reader_role: arn:aws:iam::222222222222:user/alice", "reader_role", "invalid role ARN"),
        ("reader_role: {a: 1}", "reader_role", "must be a string, not a mapping"),
        ('reader_role: "arn:aws:iam::２２２２２２２２２２２２:role/r"', "reader_role", "invalid role ARN"),
        ('reader_role: "arn:aws:iam::222222222222:role/ｒｅａｄｅｒ"', "reader_role", "invalid role ARN"),
        ("reader_role: \"arn:aws:iam::222222222222:role/x\\nfoo\"", "reader_role", "invalid role ARN"),
        ("resource_id: db-ABCDEF", "resource_id", "invalid resource id 'db-ABCDEF' (expected cluster-... for a cluster)"),
        ("resource_id: cluster-", "resource_id", "invalid resource id"),
        ("resource_id: cluster-ABC;DROP", "resource_id", "invalid resource id"),
        (f"resource_id: cluster-{'A' * 5000}", "resource_id", "..."),
        ("resource_id: 12", "resource_id", "must be a string, not a number"),
        ('resource_id: "cluster-ＡＢＣ"', "resource_id", "invalid resource id"),
    ],
)
def test_malformed_placement_values_name_the_field(line: str, field: str, message: str) -> None:
    err = error_of(line)
    assert err.field == f"databases.billing-prod.{field}"
    assert message in str(err)
    assert len(str(err)) < 400  # a hostile value is clipped, never echoed whole


@pytest.mark.parametrize(
    "defaults, field, message",
    [
        ("defaults:\n  reader_role_name: 'bad name'", "defaults.reader_role_name", "invalid role name 'bad name'"),
        ("defaults:\n  reader_role_name: a/b", "defaults.reader_role_name", "invalid role name 'a/b'"),
        (f"defaults:\n  reader_role_name: {'r' * 65}", "defaults.reader_role_name", "invalid role name"),
        ("defaults:\n  reader_role_name: 7", "defaults.reader_role_name", "must be a string, not a number"),
        ("defaults:\n  reader_role: x", "defaults", "unknown key 'reader_role'"),
        ("defaults: [x]", "defaults", "must be a mapping, not a list"),
    ],
)
def test_malformed_defaults_name_the_field(defaults: str, field: str, message: str) -> None:
    err = error_of(defaults=defaults)
    assert err.field == field
    assert message in str(err)


def test_malformed_service_account_argument_is_refused() -> None:
    with pytest.raises(PolicyLoadError, match="invalid service account 'me'"):
        load(service_account="me")


def test_each_resource_id_prefix_matches_its_kind() -> None:
    text = policy_text("resource_id: prx-0123456789abcdef0").replace(
        "cluster: billing", "proxy: billing\n    target_cluster: billing\n    target_auth: iam")
    assert load_policy_text(text).databases["billing-prod"].resource_id == "prx-0123456789abcdef0"
    text = policy_text("resource_id: db-ABCDEFGHIJKLMNOPQRSTUVWXYZ").replace("cluster: billing", "instance: billing")
    assert load_policy_text(text).databases["billing-prod"].resource_id == "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def test_policy_check_judges_foreign_databases_only_with_a_service_account(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from devtools.cli.main import cli

    path = tmp_path / "orgs.yaml"
    path.write_text(policy_text(SIGNER))
    runner = CliRunner()
    unknown = runner.invoke(cli, ["policy", "check", str(path)], env={"RDSVEND_SERVICE_ACCOUNT": ""})
    assert unknown.exit_code == 0, unknown.output
    assert "not checked for a reader role" in unknown.output
    judged = runner.invoke(cli, ["policy", "check", "--service-account", SERVICE, str(path)])
    assert judged.exit_code == 2
    assert judged.output.strip().splitlines() == [
        f"rdsvend: {path}, field 'databases.billing-prod.reader_role': the database is in account {MEMBER}, "
        f"not the service's account {SERVICE}: set reader_role (or defaults.reader_role_name) so rdsvend "
        "can read it, or give host, port and resource_id (missing: host, port, resource_id)"]
    from_env = runner.invoke(cli, ["policy", "check", str(path)], env={"RDSVEND_SERVICE_ACCOUNT": SERVICE})
    assert from_env.exit_code == 2
    bad = runner.invoke(cli, ["policy", "check", "--service-account", "12", str(path)])
    assert bad.exit_code == 2 and bad.output.strip() == f"rdsvend: {path}: invalid service account '12' (expected 12 digits)"
