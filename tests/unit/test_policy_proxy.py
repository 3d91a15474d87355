"""``proxy`` databases: the target behind the proxy and how the proxy logs in to it. Every
inconsistency is one load error naming the file and the field."""
from __future__ import annotations

import textwrap

import pytest

from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import load_policy_text

PROXY = """
version: 1
databases:
  orders-proxy:
    engine: {engine}
    region: us-east-1
    proxy: orders-proxy
{extra}
    users:
      orders_app: {{auth: iam, tier: service-user}}
{more_users}
rules:
  - id: orders-api
    effect: allow
    principals: ["arn:aws:iam::111122223333:role/orders-api-*"]
    databases: [orders-proxy]
    db_users: [orders_app]
"""


def text(extra: str = "    target_instance: orders-prod\n    target_auth: iam", *, engine: str = "postgres",
         more_users: str = "", kind: str = "proxy") -> str:
    body = PROXY.format(engine=engine, extra=extra, more_users=more_users)
    return body.replace("proxy: orders-proxy", f"{kind}: orders-proxy") if kind != "proxy" else body


def error_of(policy: str) -> PolicyLoadError:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(policy, source="access.yaml")
    return info.value


@pytest.mark.parametrize("engine", ["postgres", "mysql", "mariadb"])
def test_a_proxy_names_its_target_and_how_it_logs_in(engine: str) -> None:
    db = load_policy_text(text(engine=engine)).databases["orders-proxy"]
    assert (db.kind, db.identifier) == ("proxy", "orders-proxy")
    assert db.target is not None
    assert (db.target.kind, db.target.identifier, db.target.auth, db.target.key) == (
        "instance", "orders-prod", "iam", "target_instance")


def test_a_cluster_target_reached_with_secrets() -> None:
    db = load_policy_text(text("    target_cluster: orders-aurora\n    target_auth: secrets")).databases["orders-proxy"]
    assert db.target is not None and (db.target.kind, db.target.identifier, db.target.auth) == (
        "cluster", "orders-aurora", "secrets")


def test_an_instance_or_cluster_has_no_target() -> None:
    assert load_policy_text(text("", kind="instance")).databases["orders-proxy"].target is None


@pytest.mark.parametrize(("extra", "more_users", "kind", "field", "message"), [
    ("    target_auth: iam", "", "proxy", "databases.orders-proxy.target_instance",
     "a proxy database needs 'target_instance' or 'target_cluster'"),
    ("    target_instance: a\n    target_cluster: b\n    target_auth: iam", "", "proxy",
     "databases.orders-proxy.target_cluster", "names both 'target_instance' and 'target_cluster'"),
    ("    target_instance: orders-prod", "", "proxy", "databases.orders-proxy.target_auth",
     "missing: how the proxy logs in to its target (iam or secrets)"),
    ("    target_instance: orders-prod\n    target_auth: password", "", "proxy",
     "databases.orders-proxy.target_auth", "invalid target_auth 'password' (expected iam or secrets)"),
    ("    target_instance: 9-bad\n    target_auth: iam", "", "proxy", "databases.orders-proxy.target_instance",
     "invalid instance identifier '9-bad'"),
    ("    target_instance: [a]\n    target_auth: iam", "", "proxy", "databases.orders-proxy.target_instance",
     "must be a string, not a list"),
    ("    target_instance: orders-prod", "", "instance", "databases.orders-proxy.target_instance",
     "'target_instance' is only for a 'proxy' database (this one names a instance)"),
    ("    target_auth: iam", "", "cluster", "databases.orders-proxy.target_auth",
     "'target_auth' is only for a 'proxy' database"),
    ("    target_instance: orders-prod\n    target_auth: iam", "      etl: {auth: kerberos}", "proxy",
     "databases.orders-proxy.users.etl.auth", "RDS Proxy cannot log in a Kerberos user"),
    ("    target_instance: orders-prod\n    target_auth: iam",
     '      batch: {auth: password, secret: "arn:aws:secretsmanager:us-east-1:111122223333:secret:b"}', "proxy",
     "databases.orders-proxy.users.batch.auth", "'target_auth: iam' logs in with IAM only"),
])
def test_load_errors_name_the_field(extra: str, more_users: str, kind: str, field: str, message: str) -> None:
    err = error_of(text(extra, more_users=more_users, kind=kind))
    assert err.field == field
    assert message in str(err)
    assert str(err).startswith("access.yaml") and "\n" not in str(err)


def test_password_users_may_go_through_a_proxy_that_reads_secrets() -> None:
    policy = load_policy_text(text("    target_instance: orders-prod\n    target_auth: secrets", more_users=textwrap.indent(
        'batch: {auth: password, secret: "arn:aws:secretsmanager:us-east-1:111122223333:secret:b"}', "      ")))
    assert policy.databases["orders-proxy"].users["batch"].auth == "password"
