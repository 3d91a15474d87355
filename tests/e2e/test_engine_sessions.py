"""Each engine lists and ends a database user's open sessions on a real server (what the grants
need when access ends): PostgreSQL through pg_stat_activity and pg_terminate_backend, the MySQL
family through information_schema.PROCESSLIST and KILL (the local MariaDB, behind its RDS-like front)."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from chalicelib.engines.base import ConnectParams, DbConnectError
from chalicelib.engines.mysql import MysqlEngine, MysqlSession
from chalicelib.engines.postgres import PostgresEngine, PostgresSession
from devtools.local.mariadb import mariadb_available
from devtools.local.postgres import PostgresCluster
from devtools.local.stack import LocalStack

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        cluster.create_password_user("app", PASSWORD)
        cluster.create_password_user("boss", PASSWORD)
        cluster.run_sql("ALTER ROLE boss SUPERUSER")
        yield cluster


def pg_login(pg: PostgresCluster, user: str) -> PostgresSession:
    return PostgresEngine().connect(ConnectParams(host=pg.host, port=pg.port, dbname="postgres", user=user,
                                                  password=PASSWORD, sslrootcert=str(pg.ca_path), connect_timeout=5))


def test_postgres_lists_and_ends_a_users_sessions(pg: PostgresCluster) -> None:
    first, second, boss = pg_login(pg, "app"), pg_login(pg, "app"), pg_login(pg, "boss")
    try:
        listed = boss.sessions_of("app")
        assert len(listed) == 2 and {s.user for s in listed} == {"app"}
        assert all(s.application == "rdsvend-canary" for s in listed)
        assert first.sessions_of("app") and len(first.sessions_of("app")) == 1  # never itself
        assert boss.end_sessions("app") == 2
        with pytest.raises(DbConnectError):
            first.current_role()
        assert boss.sessions_of("app") == ()
        assert boss.end_sessions("app") == 0
    finally:
        for session in (first, second, boss):
            session.close()


@pytest.mark.skipif(not mariadb_available(), reason="MariaDB server binaries not installed")
def test_mysql_lists_and_ends_a_users_sessions(local_stack: LocalStack) -> None:
    info = local_stack.info
    sm = info.seeded.execution.session(info.region).client("secretsmanager", endpoint_url=info.moto_url)
    secret = json.loads(sm.get_secret_value(SecretId="rdsvend/shop-local/shop_batch")["SecretString"])

    def login() -> MysqlSession:
        return MysqlEngine().connect(ConnectParams(host=secret["host"], port=secret["port"], dbname=secret["dbname"],
                                                   user=secret["username"], password=secret["password"],
                                                   sslrootcert=local_stack.ca_path, connect_timeout=5))

    first, second = login(), login()
    try:
        listed = first.sessions_of("shop_batch")
        assert len(listed) == 1 and listed[0].user == "shop_batch"  # the other one, never itself
        assert first.end_sessions("shop_batch") == 1
        with pytest.raises(DbConnectError):
            second.current_role()
        assert first.sessions_of("shop_batch") == ()
    finally:
        first.close()
        second.close()
