"""Ending a db user's sessions: which administrator is used, and failures that say what went
wrong without the administrator's password."""
from __future__ import annotations

import pytest

from chalicelib.engines.mysql import MysqlAdmin
from chalicelib.engines.postgres import PostgresAdmin
from chalicelib.grants.sessions import AdminSessionEnder, SessionsUnavailableError
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy
from devtools.local.postgres import free_port
from tests.support.grant_policies import GRANT_POLICY

PASSWORD = "s3cret-admin-pw-77"


@pytest.fixture(scope="module")
def policy() -> AccessPolicy:
    return load_policy_text(GRANT_POLICY, "g.yaml")


def test_postgres_failure_names_the_database_never_the_password(policy: AccessPolicy) -> None:
    port = free_port()
    admin = PostgresAdmin(f"host=127.0.0.1 port={port} user=admin password={PASSWORD} dbname=postgres sslmode=disable")
    ender = AdminSessionEnder(resolve=lambda db: ("127.0.0.1", port), admins={"postgres": admin}, timeout=2)
    with pytest.raises(SessionsUnavailableError) as caught:
        ender.end_sessions(policy.databases["orders-prod"], "orders_owner")
    assert str(caught.value).startswith("cannot end sessions on 'orders-prod': ")
    assert PASSWORD not in str(caught.value)


def test_mysql_failure_names_the_database_never_the_password(policy: AccessPolicy) -> None:
    port = free_port()
    admin = MysqlAdmin(f"mysql://admin:{PASSWORD}@127.0.0.1:{port}/")
    ender = AdminSessionEnder(resolve=lambda db: ("127.0.0.1", port), admins={"mysql": admin}, timeout=2)
    with pytest.raises(SessionsUnavailableError) as caught:
        ender.end_sessions(policy.databases["shop-prod"], "shop_owner")
    assert str(caught.value).startswith("cannot end sessions on 'shop-prod': ")
    assert PASSWORD not in str(caught.value)


def test_an_endpoint_no_administrator_covers_is_an_error_not_a_silent_pass(policy: AccessPolicy) -> None:
    admin = PostgresAdmin(f"host=db.example port=5432 user=admin password={PASSWORD}")
    ender = AdminSessionEnder(resolve=lambda db: ("orders.example", 5432), admins={"postgres": admin})
    with pytest.raises(SessionsUnavailableError, match="no administrator connection covers 'orders-prod'"):
        ender.end_sessions(policy.databases["orders-prod"], "orders_owner")
    with pytest.raises(SessionsUnavailableError, match="covers 'shop-prod'"):  # the MySQL family: no admin at all
        ender.end_sessions(policy.databases["shop-prod"], "shop_owner")
