"""The ``dsn`` of a vend answer per engine family: never the token, hostile names encoded."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from chalicelib.vending.dsn import answer_fields, build_dsn, is_mysql_family, mysql_dsn


def test_postgres_dsn_is_a_libpq_string() -> None:
    assert build_dsn("db.example", 5432, "orders", "orders_app") == (
        "host=db.example port=5432 dbname=orders user=orders_app sslmode=verify-full")
    assert answer_fields("postgres") == {}


@pytest.mark.parametrize("engine", ["mysql", "mariadb"])
def test_mysql_family_dsn_and_auth_plugin(engine: str) -> None:
    assert build_dsn("db.example", 3306, "shop", "shop_app", engine) == (
        "mysql://shop_app@db.example:3306/shop?ssl-mode=VERIFY_IDENTITY")
    assert answer_fields(engine) == {"auth_plugin": "mysql_clear_password"}
    assert is_mysql_family(engine) and not is_mysql_family("postgres")


def test_mysql_dsn_without_dbname_ends_at_the_slash() -> None:
    assert mysql_dsn("h", 3306, None, "u") == "mysql://u@h:3306/?ssl-mode=VERIFY_IDENTITY"


def test_ipv6_host_is_bracketed() -> None:
    assert mysql_dsn("::1", 3306, "d", "u") == "mysql://u@[::1]:3306/d?ssl-mode=VERIFY_IDENTITY"


@pytest.mark.parametrize("user,dbname", [
    ("app@evil.example:1/x?ssl-mode=DISABLED#", "d"),
    ("u", "db/../other?ssl-mode=DISABLED"),
    ("spa ce%25", "per%cent"),
    ("ユーザー", "データ"),
    ("u$name.x-1", "d#frag"),
])
def test_hostile_names_cannot_change_the_uri(user: str, dbname: str) -> None:
    dsn = mysql_dsn("db.example", 3306, dbname, user)
    parts = urlsplit(dsn)
    assert parts.hostname == "db.example" and parts.port == 3306
    assert unquote(parts.username or "") == user
    assert unquote(parts.path[1:]) == dbname
    assert parts.query == "ssl-mode=VERIFY_IDENTITY" and parts.fragment == ""
    assert parts.password is None
