"""What a new user ran into in the first hour with the client CLI, against a real HTTP server on
loopback (the fake rdsvend service): ``exec`` across engines and with options after the
positionals, bad credentials told apart from denials, ``whoami`` / ``databases``, and
``pgpass --watch`` giving up on a refusal retrying cannot change."""
from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdsvend import cli_pgpass
from rdsvend.cli import main
from tests.support.client_fakes import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeVendServer,
    Reply,
    Seen,
    error_reply,
    run_cli,
    token_body,
)

SIGNATURE_MESSAGE = ("The request signature we calculated does not match the signature you provided. "
                     "Check your AWS Secret Access Key and signing method. Consult the service documentation "
                     "for details.\n\nThe Canonical String for this request should have been\n'POST\n/v1/tokens\n\n"
                     "x-amz-security-token:SESSION-SECRET\n'")


def _mariadb_body() -> dict[str, Any]:
    body = token_body("tok-my", database="shop-local", db_user="shop_app")
    body.update(engine="mariadb", port=3306, dbname="shop", auth_plugin="mysql_clear_password")
    return body


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVendServer]:
    fake = FakeVendServer()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "PGSSLROOTCERT", "PGPASSFILE", "MYSQL_PWD",
                 "RDSVEND_LOCAL_STACK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RDSVEND_URL", fake.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    yield fake
    fake.close()


def _fake_tool(directory: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable ``name`` first on PATH that records its argv and PG*/MySQL environment."""
    record = directory / f"{name}.json"
    tool = directory / name
    tool.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"json.dump({{'argv': sys.argv, 'env': {{k: v for k, v in os.environ.items() "
                    f"if k.startswith(('PG', 'RDSVEND_MYSQL'))}}}}, open({str(record)!r}, 'w'))\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return record


# -- 2: exec sets up the tool for the database's engine, or refuses naming the engine


def test_exec_refuses_psql_for_a_mariadb_database_naming_the_engine(server: FakeVendServer, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server.responder = lambda n, seen: (200, {}, _mariadb_body())
    record = _fake_tool(tmp_path, "psql", monkeypatch)
    result = run_cli(main, "exec", "shop-local", "shop_app", "--", "psql", "-c", "select 1")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "'psql' is a PostgreSQL client" in result.stderr and "mariadb database" in result.stderr
    assert not record.exists(), "psql ran and would have picked the machine's default server"


def test_exec_refuses_mariadb_for_a_postgres_database_naming_the_engine(server: FakeVendServer, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    record = _fake_tool(tmp_path, "mariadb", monkeypatch)
    result = run_cli(main, "exec", "orders-prod", "orders_app", "--", "mariadb", "-e", "select 1")
    assert result.exit_code == 2
    assert "'mariadb' is a MySQL-family client" in result.stderr and "postgres database" in result.stderr
    assert not record.exists()


def test_exec_psql_on_postgres_gets_every_connection_variable(server: FakeVendServer, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    record = _fake_tool(tmp_path, "psql", monkeypatch)
    assert run_cli(main, "exec", "orders-prod", "orders_app", "--", "psql").exit_code == 0
    env = json.loads(record.read_text())["env"]
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGPASSWORD"]) == (
        "db.example.internal", "5432", "orders_app", "tok-1")


def test_exec_mariadb_on_mariadb_gets_its_option_file_first(server: FakeVendServer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    server.responder = lambda n, seen: (200, {}, _mariadb_body())
    record = _fake_tool(tmp_path, "mariadb", monkeypatch)
    assert run_cli(main, "exec", "shop-local", "shop_app", "--", "mariadb", "-e", "select 1").exit_code == 0
    argv = json.loads(record.read_text())["argv"]
    assert argv[1].startswith("--defaults-extra-file=") and argv[2:] == ["-e", "select 1"]


# -- 3: options may follow the positionals up to '--'


def test_exec_takes_url_after_the_positionals(server: FakeVendServer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDSVEND_URL", "http://127.0.0.1:9")
    out = tmp_path / "host"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ['PGHOST'])"
    result = run_cli(main, "exec", "orders-prod", "orders_app", "--url", server.url, "--",
                     sys.executable, "-c", script)
    assert result.exit_code == 0, result.stderr
    assert out.read_text() == "db.example.internal"


def test_exec_passes_options_after_the_double_dash_to_the_command(server: FakeVendServer, tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    script = f"import json, sys; json.dump(sys.argv[1:], open({str(out)!r}, 'w'))"
    result = run_cli(main, "exec", "orders-prod", "orders_app", "--", sys.executable, "-c", script,
                     "--url", "x", "--", "y")
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text()) == ["--url", "x", "--", "y"]


# -- 4: bad credentials are reported as such; whoami and databases


def _bad_signature(n: int, seen: Seen) -> Reply:
    return 403, {"x-amzn-ErrorType": "InvalidSignatureException"}, {"message": SIGNATURE_MESSAGE}


@pytest.mark.parametrize("args", [("token", "orders-prod", "orders_app"), ("whoami",), ("databases",),
                                  ("pgpass", "orders-prod", "orders_app", "--watch")])
def test_a_refused_signature_is_a_credential_error_exit_2(server: FakeVendServer, tmp_path: Path,
                                                          args: tuple[Any, ...]) -> None:
    server.responder = _bad_signature
    extra = ("--file", str(tmp_path / "pgpass")) if args[0] == "pgpass" else ()
    result = run_cli(main, *args, *extra)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("rdsvend: error: bad_credentials: The request signature we calculated")
    assert "InvalidSignatureException" in result.stderr and "forbidden" not in result.stderr
    assert "SESSION-SECRET" not in result.stderr and "Canonical" not in result.stderr


def test_an_unknown_access_key_is_a_credential_error(server: FakeVendServer) -> None:
    server.responder = lambda n, seen: (403, {"x-amzn-ErrorType": "UnrecognizedClientException"},
                                        {"message": "The security token included in the request is invalid."})
    result = run_cli(main, "token", "orders-prod", "orders_app")
    assert result.exit_code == 2
    assert "bad_credentials: The security token included in the request is invalid." in result.stderr


def test_forbidden_points_at_whoami_and_databases(server: FakeVendServer) -> None:
    server.responder = lambda n, seen: error_reply(403, "forbidden")
    result = run_cli(main, "token", "orders-prd", "orders_app")
    assert result.exit_code == 1
    assert result.stderr.startswith("rdsvend: error: forbidden:")
    assert "'rdsvend databases'" in result.stderr and "'rdsvend whoami'" in result.stderr


WHOAMI = {"principal": "arn:aws:iam::111122223333:user/alice", "arn": "arn:aws:iam::111122223333:user/alice",
          "account": "111122223333", "org_id": "o-abc", "session": None}
DATABASES = {"databases": [{"database": "orders-prod", "engine": "postgres", "host": "db.example.internal",
                            "port": 5432, "dbname": "orders", "region": "us-east-1",
                            "db_users": ["orders_app", "orders_ro"]}]}


def test_whoami_prints_who_the_service_takes_you_for(server: FakeVendServer) -> None:
    server.responder = lambda n, seen: (200, {}, WHOAMI)
    result = run_cli(main, "whoami")
    assert result.exit_code == 0
    assert "principal: arn:aws:iam::111122223333:user/alice" in result.stdout
    assert "session:   -" in result.stdout
    assert server.seen[0].method == "GET" and server.seen[0].path.endswith("/v1/whoami")
    assert server.seen[0].signature_ok
    assert json.loads(run_cli(main, "whoami", "--json").stdout) == WHOAMI


def test_databases_lists_what_you_may_ask_for(server: FakeVendServer) -> None:
    server.responder = lambda n, seen: (200, {}, DATABASES)
    result = run_cli(main, "databases", "--url", server.url)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["DATABASE", "ENGINE", "ENDPOINT", "DBNAME", "DB_USERS"]
    assert lines[1].split() == ["orders-prod", "postgres", "db.example.internal:5432", "orders",
                                "orders_app,orders_ro"]
    assert json.loads(run_cli(main, "databases", "--json").stdout) == DATABASES


def test_databases_when_none_is_allowed_says_so(server: FakeVendServer) -> None:
    server.responder = lambda n, seen: (200, {}, {"databases": []})
    result = run_cli(main, "databases")
    assert result.exit_code == 0 and result.stdout.startswith("no database:")


# -- 5: pgpass --watch backs off on transient failures and stops on a permanent refusal


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) > 20:
            raise AssertionError("pgpass --watch never gave up")

    monkeypatch.setattr("rdsvend.cli_pgpass.time.sleep", sleep)
    return waits


def test_watch_stops_on_a_permanent_refusal_saying_why(server: FakeVendServer, tmp_path: Path,
                                                       sleeps: list[float]) -> None:
    server.responder = lambda n, seen: error_reply(403, "forbidden")
    result = run_cli(main, "pgpass", "orders-prod", "orders_app", "--file", str(tmp_path / "pgpass"), "--watch")
    assert result.exit_code == 1
    assert sleeps == [] and len(server.posts) == 1
    assert "stopped watching: retrying cannot change this answer" in result.stderr


def test_watch_backs_off_on_transient_failures_then_stops_on_a_refusal(server: FakeVendServer, tmp_path: Path,
                                                                       sleeps: list[float]) -> None:
    answers = [error_reply(503, "upstream_unavailable"), error_reply(503, "upstream_unavailable"),
               error_reply(429, "rate_limited", retry_after=30), (200, {}, token_body("tok-4")),
               error_reply(503, "upstream_unavailable"), error_reply(403, "forbidden")]
    server.responder = lambda n, seen: answers[n - 1]
    target = tmp_path / "pgpass"
    result = run_cli(main, "pgpass", "orders-prod", "orders_app", "--file", str(target), "--watch")
    assert result.exit_code == 1
    # 2 s, 4 s, Retry-After 30 s; the token's half-life (420 s); after a success the backoff starts again
    assert sleeps == [2.0, 4.0, 30.0, 420.0, 2.0]
    assert "tok-4" in target.read_text()
    assert result.stderr.count("retrying in") == 4
    assert "stopped watching" in result.stderr.splitlines()[-1]


def test_backoff_is_capped_at_a_minute() -> None:
    assert cli_pgpass.backoff_seconds(1, None) == 2.0
    assert cli_pgpass.backoff_seconds(30, None) == 60.0
    assert cli_pgpass.backoff_seconds(1, 90.0) == 90.0
