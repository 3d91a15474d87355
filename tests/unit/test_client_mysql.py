"""The client's MySQL-family helpers: option files (hostile names included, read back by the
real ``mariadb`` client's own parser), the exec argv/env, and PyMySQL's TLS parameters."""
from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rdsvend.api import VendedToken
from rdsvend.mysql import (
    DEFAULTS_ENV,
    MysqlOptionError,
    mysql_command,
    option_file_text,
    pymysql_params,
)

TOKEN = "db.example:3306/?Action=connect&DBUser=shop_app&X-Amz-Security-Token=" + "Q%2F" * 500 + "&X-Amz-Signature=ab"


def vended(user: str = "shop_app", dbname: str = "shop", host: str = "db.example", token: str = TOKEN) -> VendedToken:
    return VendedToken(token=token, expires_at=datetime.now(UTC), ttl_seconds=800, database="shop",
                       db_user=user, engine="mariadb", host=host, port=3306, dbname=dbname, region="us-east-1",
                       sslmode="verify-full", ssl_root_cert="rds-global-bundle.pem", dsn="", rule="r",
                       auth_plugin="mysql_clear_password")


def print_defaults(path: str | Path) -> str:
    """What the mariadb client would use, per its own option-file parser."""
    out = subprocess.run(["mariadb", f"--defaults-extra-file={path}", "--print-defaults"],
                         capture_output=True, text=True, check=True, env={"HOME": "/nonexistent", "PATH": os.environ["PATH"]})
    return out.stdout


needs_client = pytest.mark.skipif(shutil.which("mariadb") is None, reason="no mariadb client on this machine")


@needs_client
@pytest.mark.parametrize("user,dbname", [
    ("shop_app", "shop"),
    ('we"ird\\name', "db'x"),
    ("spa ce#;=", "d b"),
    ("ユーザー", "データ"),
])
def test_option_file_round_trips_through_the_real_client(tmp_path: Path, user: str, dbname: str) -> None:
    path = tmp_path / "c.cnf"
    path.write_text(option_file_text(vended(user, dbname), "/ca/bundle.pem", "mariadb"))
    printed = print_defaults(path)
    assert f"--user={user}" in printed
    assert f"--password={TOKEN}" in printed
    assert "--host=db.example" in printed and "--port=3306" in printed and "--protocol=TCP" in printed
    assert "--ssl-ca=/ca/bundle.pem" in printed and "--ssl-verify-server-cert" in printed
    assert f"--database={dbname}" in printed


@pytest.mark.parametrize("field", ["user", "dbname", "host", "token"])
@pytest.mark.parametrize("bad", ["a\nssl=0", "a\rb", "a\x00b", "a\x1bb"])
def test_control_characters_are_refused_naming_the_field(field: str, bad: str) -> None:
    kwargs = {"user": "u", "dbname": "d", "host": "h", "token": "t"}
    kwargs[field] = bad
    with pytest.raises(MysqlOptionError) as err:
        option_file_text(vended(**kwargs), "/ca.pem", "mariadb")
    assert {"user": "db_user", "token": "token", "host": "host", "dbname": "dbname"}[field] in str(err.value)
    assert bad not in str(err.value)


def test_flavours_ask_for_full_verification_their_own_way() -> None:
    mysql = option_file_text(vended(), "/ca.pem", "mysql")
    assert "ssl-mode=VERIFY_IDENTITY" in mysql and "client-mariadb" not in mysql
    unknown = option_file_text(vended(), "/ca.pem", "unknown")
    assert "loose-ssl-mode=VERIFY_IDENTITY" in unknown and "loose-ssl-verify-server-cert" in unknown


def test_no_dbname_means_no_database_option() -> None:
    assert "database=" not in option_file_text(vended(dbname=""), "/ca.pem", "mariadb")


@needs_client
def test_exec_puts_the_file_first_private_and_removes_it() -> None:
    env = {"PATH": os.environ["PATH"], "MYSQL_PWD": "leak", "PGSSLROOTCERT": "/ca.pem"}
    with mysql_command(["mariadb", "-e", "select 1"], vended(), env) as (argv, child_env):
        path = argv[1].split("=", 1)[1]
        assert argv[0] == "mariadb" and argv[1].startswith("--defaults-extra-file=") and argv[2:] == ["-e", "select 1"]
        assert TOKEN not in " ".join(argv) and TOKEN not in "".join(child_env.values())
        assert "MYSQL_PWD" not in child_env and child_env[DEFAULTS_ENV] == path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert "--ssl-ca=/ca.pem" in print_defaults(path)
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_exec_of_another_program_gets_the_path_in_the_environment() -> None:
    with mysql_command(["sh", "-c", "true"], vended(), {"PATH": "/usr/bin:/bin"}) as (argv, env):
        assert argv == ["sh", "-c", "true"]
        assert os.path.exists(env[DEFAULTS_ENV])
        assert env["LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN"] == "1"
    assert not os.path.exists(env[DEFAULTS_ENV])


def test_file_is_removed_when_the_command_fails() -> None:
    with pytest.raises(RuntimeError), mysql_command(["mariadb"], vended(), {"PATH": os.environ["PATH"]}) as (argv, _):
        path = argv[1].split("=", 1)[1]
        raise RuntimeError("boom")
    assert not os.path.exists(path)


def test_pymysql_params_verify_ca_and_host_name(tmp_path: Path) -> None:
    from devtools.local.tls import make_tls_material

    tls = make_tls_material(tmp_path / "tls", owner=None)
    params = pymysql_params(vended(), {"PGSSLROOTCERT": str(tls.ca_cert)})
    ctx = params["ssl"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert (params["host"], params["port"], params["user"], params["password"], params["database"]) == (
        "db.example", 3306, "shop_app", TOKEN, "shop")
    assert "database" not in pymysql_params(vended(dbname=""), {"PGSSLROOTCERT": str(tls.ca_cert)})


def test_vended_token_keeps_auth_plugin_and_hides_the_token() -> None:
    body = vended().to_body()
    assert body["auth_plugin"] == "mysql_clear_password"
    again = VendedToken.from_body(body, 0.0)
    assert again.auth_plugin == "mysql_clear_password"
    assert TOKEN not in repr(again)


def test_mysql_url_holds_the_token_percent_encoded() -> None:
    from urllib.parse import unquote, urlsplit

    from rdsvend.mysql import mysql_url

    url = mysql_url(vended(user="a@b:c", dbname="d/e?"))
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.query) == ("db.example", 3306, "ssl-mode=VERIFY_IDENTITY")
    assert parts.username is not None and parts.password is not None
    assert unquote(parts.username) == "a@b:c" and unquote(parts.password) == TOKEN
    assert unquote(parts.path[1:]) == "d/e?"
