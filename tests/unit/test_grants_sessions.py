"""Ending a db user's sessions: which administrator is used, and failures that say what went
wrong without the administrator's password."""
from __future__ import annotations

import socket

import pytest

from chalicelib.canary.checks_mysql import PyMysqlAdmin
from chalicelib.canary.factory import PsycopgAdmin
from chalicelib.grants.sessions import AdminSessionEnder, SessionsUnavailableError
from chalicelib.policy.loader import load_policy_text
from tests.support.grant_policies import GRANT_POLICY

PASSWORD = "s3cret-admin-pw-77"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def policy():
    return load_policy_text(GRANT_POLICY, "g.yaml")


def test_postgres_failure_names_the_database_never_the_password(policy):
    port = _closed_port()
    ender = AdminSessionEnder(resolve=lambda db: ("127.0.0.1", port), mysql=None, timeout=2,
                              postgres=PsycopgAdmin(f"host=127.0.0.1 port={port} user=admin password={PASSWORD} "
                                                    "dbname=postgres sslmode=disable"))
    with pytest.raises(SessionsUnavailableError) as caught:
        ender.end_sessions(policy.databases["orders-prod"], "orders_owner")
    assert str(caught.value).startswith("cannot end sessions on 'orders-prod': ")
    assert PASSWORD not in str(caught.value)


def test_mysql_failure_names_the_database_never_the_password(policy):
    port = _closed_port()
    ender = AdminSessionEnder(resolve=lambda db: ("127.0.0.1", port), postgres=None, timeout=2,
                              mysql=PyMysqlAdmin(f"mysql://admin:{PASSWORD}@127.0.0.1:{port}/"))
    with pytest.raises(SessionsUnavailableError) as caught:
        ender.end_sessions(policy.databases["shop-prod"], "shop_owner")
    assert str(caught.value).startswith("cannot end sessions on 'shop-prod': ")
    assert PASSWORD not in str(caught.value)


def test_an_endpoint_no_administrator_covers_is_an_error_not_a_silent_pass(policy):
    admin = PsycopgAdmin(f"host=db.example port=5432 user=admin password={PASSWORD}")
    ender = AdminSessionEnder(resolve=lambda db: ("orders.example", 5432), postgres=admin, mysql=None)
    with pytest.raises(SessionsUnavailableError, match="no administrator connection covers 'orders-prod'"):
        ender.end_sessions(policy.databases["orders-prod"], "orders_owner")
    with pytest.raises(SessionsUnavailableError, match="covers 'shop-prod'"):
        ender.end_sessions(policy.databases["shop-prod"], "shop_owner")
