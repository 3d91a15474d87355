"""The database checks against a throwaway, RDS-shaped PostgreSQL (TLS verify-full): role
membership through nested grants, tier privileges, and connection failures by kind."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from psycopg import sql

from chalicelib.canary.checks_db import check_auth_conflict, check_rds_iam, check_tier
from chalicelib.engines.base import ConnectParams, DbConnectError
from chalicelib.engines.postgres import PostgresAdmin, PostgresEngine
from chalicelib.engines.postgres_catalog import RoleFacts
from chalicelib.engines.trust import BUNDLE_PATH
from chalicelib.policy.model import DbUser
from devtools.local.postgres import PostgresCluster

pytestmark = pytest.mark.e2e  # starts a server: not in the fast tier

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        run = cluster.run_sql
        run("CREATE DATABASE orders")
        for role in ("app_base", "legacy_ad", "admins"):
            run(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        run("GRANT rds_iam TO app_base")
        run("GRANT rds_ad TO legacy_ad")
        run("ALTER ROLE admins CREATEROLE")
        cluster.create_password_user("svc", PASSWORD, grants=["app_base"])  # rds_iam via app_base
        cluster.create_password_user("plain", PASSWORD)
        cluster.create_password_user("both", PASSWORD, grants=["app_base", "legacy_ad"])
        cluster.create_password_user("boss", PASSWORD, grants=["admins"])
        cluster.create_password_user("owner", PASSWORD)
        run("CREATE SCHEMA shop AUTHORIZATION owner", dbname="orders")
        yield cluster


def params(pg: PostgresCluster, user: str = "svc", password: str = PASSWORD, **kw: Any) -> ConnectParams:
    base = ConnectParams(host=pg.host, port=pg.port, dbname="orders", user=user, password=password,
                         sslrootcert=str(pg.ca_path), connect_timeout=5)
    return replace(base, **kw)


def facts(pg: PostgresCluster, role: str, user: str = "plain") -> RoleFacts:
    """Read as an unprivileged role (not even in rds_iam): the catalogs are public."""
    session = PostgresEngine().connect(params(pg, user))
    try:
        return session.user_facts(role)
    finally:
        session.close()


def test_membership_through_nested_grants_is_found_with_its_path(pg: PostgresCluster) -> None:
    f = facts(pg, "svc")
    assert f.rds_iam_path == ("app_base", "rds_iam")
    assert check_rds_iam("svc", f).status == "pass"
    assert check_auth_conflict("svc", f).status == "pass"


def test_not_in_rds_iam_fails_with_the_grant_to_run(pg: PostgresCluster) -> None:
    result = check_rds_iam("plain", facts(pg, "plain"))
    assert result.status == "fail" and result.fix == "GRANT rds_iam TO plain;"


def test_rds_ad_through_a_nested_role_is_a_conflict(pg: PostgresCluster) -> None:
    result = check_auth_conflict("both", facts(pg, "both"))
    assert result.status == "fail"
    assert result.details["path"] == ["legacy_ad", "rds_ad"]
    assert result.fix.startswith("REVOKE legacy_ad FROM both;")


def test_missing_role(pg: PostgresCluster) -> None:
    assert check_rds_iam("ghost", facts(pg, "ghost")).status == "fail"


@pytest.mark.parametrize("role, expected", [
    ("svc", None), ("boss", "has createrole through role admins"), ("owner", "owns schema shop"),
])
def test_tier_reads_inherited_attributes_and_schema_ownership(pg: PostgresCluster, role: str,
                                                              expected: str | None) -> None:
    result = check_tier(DbUser(role, "iam", "service-user"), facts(pg, role))
    if expected is None:
        assert result.status == "pass"
    else:
        assert result.status == "fail" and expected in result.message


def test_tier_sees_superuser_createrole_createdb_set_directly(pg: PostgresCluster) -> None:
    pg.run_sql("CREATE ROLE temp_svc LOGIN SUPERUSER CREATEDB")
    try:
        result = check_tier(DbUser("temp_svc", "iam", "service-user"), facts(pg, "temp_svc"))
        assert result.status == "fail"
        assert "is superuser" in result.message and "can create databases" in result.message
        admin = check_tier(DbUser("temp_svc", "iam", "service-admin"), facts(pg, "temp_svc"))
        assert admin.status == "fail" and "NOSUPERUSER" in admin.fix
    finally:
        pg.run_sql("DROP ROLE temp_svc")


def test_admin_dsn_reads_the_same_facts_and_covers_only_its_server(pg: PostgresCluster) -> None:
    admin = PostgresAdmin(pg.admin_dsn)
    assert admin.covers(pg.host, pg.port) and admin.covers("localhost", pg.port)
    assert not admin.covers(pg.host, pg.port + 1) and not admin.covers("db.example.com", pg.port)
    f = admin.user_facts(pg.host, pg.port, "orders", "owner", 5)
    assert f.owned_schemas == ("shop",)
    assert "password" not in repr(admin) and pg.admin_dsn not in repr(admin)


def test_wrong_password_is_an_auth_failure_that_never_echoes_the_password(pg: PostgresCluster) -> None:
    secret = "Action=connect&X-Amz-Signature=deadbeef-not-a-real-token"
    with pytest.raises(DbConnectError) as caught:
        PostgresEngine().connect(params(pg, user="plain", password=secret))
    assert caught.value.kind == "auth"
    assert "authentication failed" in caught.value.message
    assert "deadbeef" not in caught.value.message


def test_rds_iam_member_refused_by_the_server_is_an_auth_failure(pg: PostgresCluster) -> None:
    with pytest.raises(DbConnectError) as caught:  # no token checker: rds_iam logins are rejected
        PostgresEngine().connect(params(pg, user="svc"))
    assert caught.value.kind == "auth"


def test_closed_port_is_refused(pg: PostgresCluster) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DbConnectError) as caught:
        PostgresEngine().connect(params(pg, port=port))
    assert caught.value.kind == "refused"


def test_wrong_ca_fails_verify_full(pg: PostgresCluster) -> None:
    with pytest.raises(DbConnectError) as caught:
        PostgresEngine().connect(params(pg, sslrootcert=str(BUNDLE_PATH)))
    assert caught.value.kind == "tls"


def test_a_listener_that_never_answers_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with pytest.raises(DbConnectError) as caught:
            PostgresEngine().connect(ConnectParams("127.0.0.1", listener.getsockname()[1], "orders", "svc",
                                                     PASSWORD, connect_timeout=2))
        assert caught.value.kind == "timeout"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_shipped_bundle_is_the_rds_ca_set() -> None:
    from cryptography import x509

    certs = x509.load_pem_x509_certificates(BUNDLE_PATH.read_bytes())
    assert len(certs) > 100
    names = {c.subject.rfc4514_string() for c in certs}
    assert any("Amazon RDS us-east-1 Root CA RSA2048 G1" in n for n in names)
