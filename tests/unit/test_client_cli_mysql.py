"""``rdsvend exec`` and ``token --format dsn`` for a MySQL-family answer, against a real HTTP
server on loopback (the fake rdsvend service); the program run is a Python script that
reports what it was given."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdsvend.cli import main
from tests.support.client_fakes import ACCESS_KEY, SECRET_KEY, FakeVendServer, run_cli, token_body

TOKEN = "db.example.internal:3306/?Action=connect&DBUser=shop_app&X-Amz-Signature=" + "f" * 64


def mysql_body(db_user: str = "shop_app") -> dict[str, Any]:
    body = token_body(TOKEN, database="shop", db_user=db_user)
    body.update(engine="mariadb", port=3306, dbname="shop", auth_plugin="mysql_clear_password",
                dsn=f"mysql://{db_user}@db.example.internal:3306/shop?ssl-mode=VERIFY_IDENTITY")
    return body


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVendServer]:
    fake = FakeVendServer()
    fake.responder = lambda n, seen: (200, {}, mysql_body())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "PGSSLROOTCERT", "MYSQL_PWD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RDSVEND_URL", fake.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    yield fake
    fake.close()


def test_exec_hands_the_login_over_in_a_private_file_only(server: FakeVendServer, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_PWD", "from-the-shell")
    out = tmp_path / "seen.json"
    script = ("import json, os, stat, sys; p = os.environ['RDSVEND_MYSQL_DEFAULTS_FILE']; "
              "json.dump({'path': p, 'mode': stat.S_IMODE(os.stat(p).st_mode), "
              "'dir_mode': stat.S_IMODE(os.stat(os.path.dirname(p)).st_mode), 'text': open(p).read(), "
              "'env': dict(os.environ), 'argv': sys.argv}, "
              f"open({str(out)!r}, 'w')); sys.exit(4)")
    result = run_cli(main, "exec", "shop", "shop_app", "--", sys.executable, "-c", script)
    assert result.exit_code == 4
    seen = json.loads(out.read_text())
    assert (seen["mode"], seen["dir_mode"]) == (0o600, 0o700)
    assert f'password="{TOKEN}"' in seen["text"] and "protocol=TCP" in seen["text"] and "ssl-ca=" in seen["text"]
    assert TOKEN not in json.dumps(seen["env"]) and TOKEN not in json.dumps(seen["argv"])
    assert "MYSQL_PWD" not in seen["env"] and "PGPASSWORD" not in seen["env"]
    assert not os.path.exists(seen["path"]) and not os.path.exists(os.path.dirname(seen["path"]))
    assert TOKEN not in result.stdout + result.stderr


def test_exec_refuses_a_name_that_would_break_the_option_file(server: FakeVendServer, tmp_path: Path) -> None:
    server.responder = lambda n, seen: (200, {}, mysql_body(db_user="shop_app\nssl=0"))
    marker = tmp_path / "ran"
    result = run_cli(main, "exec", "shop", "shop_app", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert result.exit_code == 1 and not marker.exists()
    assert result.stderr.count("\n") == 1 and "db_user" in result.stderr and TOKEN not in result.stderr


def test_exec_unknown_command_is_one_line_and_leaves_no_file(server: FakeVendServer, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    result = run_cli(main, "exec", "shop", "shop_app", "--", "no-such-mysql-rdsvend")
    assert result.exit_code == 127
    assert result.stderr == "rdsvend: error: command not found: 'no-such-mysql-rdsvend'\n"
    assert list(tmp_path.iterdir()) == []


def test_token_dsn_is_a_mysql_url(server: FakeVendServer) -> None:
    result = run_cli(main, "token", "shop", "shop_app", "--format", "dsn")
    assert result.exit_code == 0
    assert result.stdout.startswith("mysql://shop_app:db.example.internal%3A3306%2F%3FAction%3Dconnect")
    assert result.stdout.strip().endswith("@db.example.internal:3306/shop?ssl-mode=VERIFY_IDENTITY")


@pytest.mark.parametrize("args", [["token", "shop", "shop_app", "--format", "env"],
                                  ["pgpass", "shop", "shop_app", "--file", "PGPASS"]])
def test_libpq_only_outputs_are_refused_for_the_mysql_family(server: FakeVendServer, tmp_path: Path,
                                                             args: list[Any]) -> None:
    """PG* variables or a pgpass line would look like success and connect nothing."""
    path = tmp_path / "pgpass"
    result = run_cli(main, *[str(path) if a == "PGPASS" else a for a in args])
    assert result.exit_code == 2
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert "is for PostgreSQL; 'shop' is a mariadb database" in result.stderr
    assert "rdsvend exec shop shop_app -- mariadb" in result.stderr
    assert not path.exists()
