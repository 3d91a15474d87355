"""Each engine lists and ends a database user's open sessions on a real server (what the grants
need when access ends): PostgreSQL through pg_stat_activity and pg_terminate_backend, the MySQL
family through information_schema.PROCESSLIST and KILL (the local MariaDB, behind its RDS-like front)."""
from __future__ import annotations

import json
import os
import signal
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


#: PostgreSQL 11 to 13 (RDS still runs them under extended support) have no timeout argument to
#: pg_terminate_backend: it only signals, and rdsvend waits for the sessions itself. The server
#: here is newer; lowering the version its login read from it takes the older way against it.
BEFORE_14 = 130000


@pytest.fixture(params=["as the server is", "as on PostgreSQL 13"])
def server_version(request: pytest.FixtureRequest) -> int | None:
    return None if request.param == "as the server is" else BEFORE_14


def admin_login(pg: PostgresCluster, server_version: int | None) -> PostgresSession:
    """The administrator's login, its statements logged by the server (see :func:`terminations`)."""
    boss = pg_login(pg, "boss")
    assert boss.server_version >= 140000  # what the server said (the local one is newer than 13)
    if server_version is not None:
        boss.server_version = server_version
    boss.execute("logging statements", "SET log_statement = 'all'")
    return boss


def terminations(log: str) -> set[str]:
    """The forms of pg_terminate_backend the server was asked to run in ``log``."""
    return {form for form in ("pg_terminate_backend(pid)", "pg_terminate_backend(pid, ") if form in log}


def expected_terminations(server_version: int | None) -> set[str]:
    return {"pg_terminate_backend(pid)"} if server_version == BEFORE_14 else {"pg_terminate_backend(pid, "}


def test_postgres_lists_and_ends_a_users_sessions(pg: PostgresCluster, server_version: int | None) -> None:
    first, second, boss = pg_login(pg, "app"), pg_login(pg, "app"), admin_login(pg, server_version)
    logged = len(pg.log_text())
    try:
        listed = boss.sessions_of("app")
        assert len(listed) == 2 and {s.user for s in listed} == {"app"}
        assert all(s.application == "rdsvend-canary" for s in listed)
        assert first.sessions_of("app") and len(first.sessions_of("app")) == 1  # never itself
        assert boss.end_sessions("app") == 2
        assert boss.sessions_of("app") == ()  # gone when the call returns, not a moment later
        assert terminations(pg.log_text()[logged:]) == expected_terminations(server_version)
        with pytest.raises(DbConnectError):
            first.current_role()
        assert boss.end_sessions("app") == 0
    finally:
        for session in (first, second, boss):
            session.close()


@pytest.mark.timeout(60)
def test_postgres_waits_a_bounded_time_for_a_session_that_does_not_end(pg: PostgresCluster,
                                                                       server_version: int | None) -> None:
    # The session's server process is stopped (SIGSTOP): it cannot act on the termination until
    # it is continued, however long anyone waits. Ending the user's sessions gives up on it after
    # the bound and does not count it as ended.
    stuck, boss = pg_login(pg, "app"), admin_login(pg, server_version)
    boss.end_wait_ms = 300
    stuck_pid = int(stuck.execute("reading the backend pid", "SELECT pg_backend_pid()")[0][0])
    logged = len(pg.log_text())
    os.kill(stuck_pid, signal.SIGSTOP)
    try:
        assert boss.end_sessions("app") == 0
        assert terminations(pg.log_text()[logged:]) == expected_terminations(server_version)
        assert [s.id for s in boss.sessions_of("app")] == [stuck_pid]  # still there: it gave up waiting
    finally:
        os.kill(stuck_pid, signal.SIGCONT)
    with pytest.raises(DbConnectError):  # continued, it acts on the termination it was sent
        stuck.current_role()
    for session in (stuck, boss):
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
