"""``rdsvend token | pgpass | passexec | exec`` against a real HTTP server on loopback."""
from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdsvend.cli import main
from rdsvend.connect import bundled_ca_path
from rdsvend.pgpass import split_line
from tests.support.client_fakes import (
    ACCESS_KEY,
    SECRET_KEY,
    CliResult,
    FakeVendServer,
    Reply,
    Seen,
    error_reply,
    run_cli,
    token_body,
)


@pytest.fixture
def server() -> Iterator[FakeVendServer]:
    fake = FakeVendServer()
    yield fake
    fake.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, server: FakeVendServer) -> pytest.MonkeyPatch:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "PGSSLROOTCERT", "PGPASSFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RDSVEND_URL", server.url)
    # AWS_ENDPOINT_URL must not redirect rdsvend calls: point it at a closed port.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    return monkeypatch


def run(*args: str) -> CliResult:
    return run_cli(main, *args)


def test_token_prints_only_the_token(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    result = run("token", "orders-prod", "orders_app")
    assert result.exit_code == 0
    assert result.stdout == "tok-1\n"
    assert server.posts[0].signature_ok


def test_token_json_is_the_whole_answer(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    result = run("token", "orders-prod", "orders_app", "--format", "json")
    body = json.loads(result.stdout)
    assert body["token"] == "tok-1" and body["host"] == "db.example.internal"
    assert body["port"] == 5432 and body["ttl_seconds"] == 840 and body["rule"] == "orders-api"


def test_token_dsn_is_a_libpq_string_with_the_password(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    from psycopg.conninfo import conninfo_to_dict

    result = run("token", "orders-prod", "orders_app", "--format", "dsn")
    params = conninfo_to_dict(result.stdout.strip())
    assert params == {
        "host": "db.example.internal", "port": "5432", "dbname": "orders", "user": "orders_app",
        "password": "tok-1", "sslmode": "verify-full", "sslrootcert": bundled_ca_path(),
    }


def test_token_env_lines_are_shell_quoted(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    server.responder = lambda n, seen: (200, {}, {**_body(), "token": "a'b c$d"})
    result = run("token", "orders-prod", "orders_app", "--format", "env")
    exported = dict(shlex.split(line)[1].split("=", 1) for line in result.stdout.splitlines())
    assert exported["PGPASSWORD"] == "a'b c$d"
    assert exported["PGHOST"] == "db.example.internal"


def test_url_option_beats_the_environment(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    env.setenv("RDSVEND_URL", "http://127.0.0.1:9")
    result = run("token", "orders-prod", "orders_app", "--url", server.url)
    assert result.stdout == "tok-1\n"


def test_service_error_is_one_line_naming_the_code_exit_1(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    server.responder = lambda n, seen: error_reply(403, "forbidden")
    result = run("token", "orders-prod", "orders_app")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("rdsvend: error: forbidden:")
    assert "req-1" in result.stderr


def test_gateway_error_body_is_not_echoed(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    canonical = "The Canonical String for this request should have been 'x-amz-security-token:SECRET'"
    server.responder = lambda n, seen: (403, {}, {"message": canonical})
    result = run("passexec", "orders-prod", "orders_app")
    assert result.exit_code == 1
    assert "SECRET" not in result.stderr and "forbidden" in result.stderr


def test_unreachable_service_is_one_line_exit_1(env: pytest.MonkeyPatch) -> None:
    result = run("token", "orders-prod", "orders_app", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert result.stderr.startswith("rdsvend: error: unreachable:")
    assert result.stderr.count("\n") == 1


def test_missing_url_is_bad_usage_exit_2(env: pytest.MonkeyPatch) -> None:
    env.delenv("RDSVEND_URL")
    result = run("token", "orders-prod", "orders_app")
    assert result.exit_code == 2
    assert "RDSVEND_URL" in result.stderr


def test_missing_argument_is_bad_usage_exit_2(env: pytest.MonkeyPatch) -> None:
    assert run("token", "orders-prod").exit_code == 2
    assert run("exec", "orders-prod", "orders_app").exit_code == 2


def test_passexec_prints_only_the_token(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    result = run("passexec", "orders-prod", "orders_app")
    assert result.exit_code == 0
    assert result.stdout == "tok-1\n"


def test_exec_passes_environment_and_exit_status(env: pytest.MonkeyPatch, server: FakeVendServer,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    script = ("import json, os, sys; json.dump({k: os.environ.get(k) for k in "
              "['PGHOST','PGPORT','PGUSER','PGDATABASE','PGPASSWORD','PGSSLMODE','PGSSLROOTCERT']}, "
              f"open({str(out)!r}, 'w')); sys.exit(3)")
    env.setenv("PGSSLROOTCERT", "/etc/custom-ca.pem")
    result = run("exec", "orders-prod", "orders_app", "--", sys.executable, "-c", script)
    assert result.exit_code == 3
    assert json.loads(out.read_text()) == {
        "PGHOST": "db.example.internal", "PGPORT": "5432", "PGUSER": "orders_app",
        "PGDATABASE": "orders", "PGPASSWORD": "tok-1", "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/etc/custom-ca.pem",
    }


def test_exec_defaults_to_the_shipped_ca_bundle(env: pytest.MonkeyPatch, server: FakeVendServer,
                                                tmp_path: Path) -> None:
    out = tmp_path / "ca.txt"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ['PGSSLROOTCERT'])"
    assert run("exec", "orders-prod", "orders_app", "--", sys.executable, "-c", script).exit_code == 0
    assert out.read_text() == bundled_ca_path()
    assert os.path.isfile(bundled_ca_path())


def test_exec_unknown_command_is_one_line(env: pytest.MonkeyPatch, server: FakeVendServer) -> None:
    result = run("exec", "orders-prod", "orders_app", "--", "no-such-command-rdsvend")
    assert result.exit_code == 127
    assert result.stderr == "rdsvend: error: command not found: 'no-such-command-rdsvend'\n"


def test_exec_does_not_run_the_command_when_vending_fails(env: pytest.MonkeyPatch, server: FakeVendServer,
                                                          tmp_path: Path) -> None:
    server.responder = lambda n, seen: error_reply(403, "forbidden")
    marker = tmp_path / "ran"
    result = run("exec", "orders-prod", "orders_app", "--", sys.executable, "-c",
                 f"open({str(marker)!r}, 'w')")
    assert result.exit_code == 1 and not marker.exists()


def test_pgpass_writes_its_line(env: pytest.MonkeyPatch, server: FakeVendServer, tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_text("keep:1:2:3:4\n")
    result = run("pgpass", "orders-prod", "orders_app", "--file", str(path))
    assert result.exit_code == 0, result.stderr
    lines = path.read_text().splitlines()
    assert lines[0] == "keep:1:2:3:4"
    assert split_line(lines[1]) == ["db.example.internal", "5432", "orders", "orders_app", "tok-1"]
    assert "tok-1" not in result.stdout + result.stderr


def test_pgpass_uses_pgpassfile_by_default(env: pytest.MonkeyPatch, server: FakeVendServer, tmp_path: Path) -> None:
    path = tmp_path / "from-env"
    env.setenv("PGPASSFILE", str(path))
    assert run("pgpass", "orders-prod", "orders_app").exit_code == 0
    assert "tok-1" in path.read_text()


def test_pgpass_every_without_watch_is_bad_usage(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = run("pgpass", "orders-prod", "orders_app", "--file", str(tmp_path / "p"), "--every", "5")
    assert result.exit_code == 2


def test_pgpass_refused_leaves_the_file_alone(env: pytest.MonkeyPatch, server: FakeVendServer, tmp_path: Path) -> None:
    server.responder = lambda n, seen: error_reply(403, "forbidden")
    path = tmp_path / "pgpass"
    path.write_text("db.example.internal:5432:orders:orders_app:old\n")
    result = run("pgpass", "orders-prod", "orders_app", "--file", str(path))
    assert result.exit_code == 1
    assert path.read_text() == "db.example.internal:5432:orders:orders_app:old\n"


def _body() -> dict[str, Any]:
    from tests.support.client_fakes import token_body

    return token_body("tok-x")


def test_no_aws_credentials_is_one_line_exit_2(env: pytest.MonkeyPatch, server: FakeVendServer, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.delenv(name)
    env.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    env.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    env.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    result = run("token", "orders-prod", "orders_app")
    assert result.exit_code == 2
    assert result.stderr == "rdsvend: error: no_credentials: no AWS credentials found to sign the request\n"
    assert server.posts == []


# -- a database declared without dbname: the service answers "dbname": null ------------------
def _without_dbname(number: int, seen: Seen) -> Reply:
    body = token_body(f"tok-{number}")
    body["dbname"] = None
    body["dsn"] = "host=db.example.internal port=5432 user=orders_app sslmode=verify-full"
    return 200, {"Cache-Control": "no-store"}, body


def test_every_command_works_when_the_service_names_no_database(env: pytest.MonkeyPatch, server: FakeVendServer,
                                                                tmp_path: Path) -> None:
    server.responder = _without_dbname
    answer = run("token", "orders-prod", "orders_app", "--format", "json")
    assert answer.exit_code == 0, answer.stderr
    assert json.loads(answer.stdout)["dbname"] is None
    dsn = run("token", "orders-prod", "orders_app", "--format", "dsn").stdout
    assert "dbname" not in dsn and "user=orders_app" in dsn
    exported = run("token", "orders-prod", "orders_app", "--format", "env").stdout.splitlines()
    assert "unset PGDATABASE" in exported and not any("PGDATABASE=" in line for line in exported)
    assert run("passexec", "orders-prod", "orders_app").stdout.startswith("tok-")

    # exec: no PGDATABASE for the command, not even one inherited from the shell
    env.setenv("PGDATABASE", "somewhere_else")
    out = tmp_path / "env.json"
    script = ("import json, os; json.dump({k: os.environ.get(k) for k in ['PGDATABASE', 'PGUSER', 'PGHOST']}, "
              f"open({str(out)!r}, 'w'))")
    assert run("exec", "orders-prod", "orders_app", "--", sys.executable, "-c", script).exit_code == 0
    assert json.loads(out.read_text()) == {"PGDATABASE": None, "PGUSER": "orders_app", "PGHOST": "db.example.internal"}

    # pgpass: '*' in the database field, and the message says so
    path = tmp_path / "pgpass"
    written = run("pgpass", "orders-prod", "orders_app", "--file", str(path))
    assert written.exit_code == 0, written.stderr
    (line,) = path.read_text().splitlines()
    assert split_line(line)[:4] == ["db.example.internal", "5432", "*", "orders_app"]
    assert "wrote db.example.internal:5432:*:orders_app" in written.stderr
