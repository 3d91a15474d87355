"""The engine package without a server: the lookup, the TLS context, error classification, and
the form in which each engine sends a new password (MariaDB: the hash, never the password)."""
from __future__ import annotations

import ssl
from typing import Any

import pytest

from chalicelib.engines.base import ConnectParams, DbConnectError
from chalicelib.engines.mysql import MysqlEngine, MysqlSession, classify_mysql_error, tls_context
from chalicelib.engines.mysql_grants import native_password_hash
from chalicelib.engines.postgres import PostgresEngine
from chalicelib.engines.postgres_catalog import classify_connect_error
from chalicelib.engines.registry import UnknownEngineError, engine_for, family_of
from chalicelib.engines.secret import DbSecret
from chalicelib.rotation.engines import engine_for as rotation_engine_for
from chalicelib.rotation.errors import RotationSecretError


@pytest.mark.parametrize("name,family", [("postgres", "postgres"), ("aurora-postgresql", "postgres"),
                                         ("mysql", "mysql"), ("mariadb", "mysql"), ("aurora-mysql", "mysql")])
def test_every_engine_name_finds_its_family(name: str, family: str) -> None:
    assert family_of(name) == family
    engine = engine_for(name)
    assert engine.family == family
    assert isinstance(engine, PostgresEngine if family == "postgres" else MysqlEngine)


def test_an_unknown_engine_is_refused_by_name() -> None:
    with pytest.raises(UnknownEngineError, match="engine 'oracle' is not supported"):
        engine_for("oracle")
    secret = DbSecret(engine="oracle", host="db.example.com", port=1521, username="app", password="p")
    with pytest.raises(RotationSecretError, match="engine 'oracle' is not supported"):
        rotation_engine_for(secret)


def test_the_mysql_tls_context_verifies_the_ca_and_the_host_name() -> None:
    ctx = tls_context(None)
    assert ctx.check_hostname is True
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_errors_are_classified_without_the_password() -> None:
    secret = "s3cr3t-token-value"
    pg = classify_connect_error(f'FATAL:  password authentication failed for user "app" ({secret})', secrets=(secret,))
    assert (pg.kind, secret in pg.message) == ("auth", False)
    my = classify_mysql_error(OSError(1045, f"Access denied for user 'app' using {secret}"), secrets=(secret,))
    assert (my.kind, my.errno, secret in my.message) == ("auth", 1045, False)
    assert MysqlEngine().classify(OSError(1524, "Plugin 'AWSAuthenticationPlugin' is not loaded")).kind == "plugin"


def test_the_native_password_hash_is_mysqls() -> None:
    # PASSWORD('password') on MySQL 5.x and MariaDB
    assert native_password_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"


class _Cursor:
    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self._rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, query: str, params: Any = None) -> None:
        self._conn.sent.append((query, params))
        self._rows = self._conn.answers.get(query, [])

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class _Conn:
    def __init__(self, version: str, current_user: str) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.answers = {"SELECT VERSION()": [(version,)],
                        "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)": [(current_user,)],
                        "SELECT Host FROM mysql.user WHERE User = %s ORDER BY Host = '%%' DESC, Host": [("%",)]}

    def cursor(self) -> _Cursor:
        return _Cursor(self)


@pytest.mark.parametrize("current_user", ["shop_batch", "admin"])
def test_mariadb_gets_the_hash_never_the_password(current_user: str) -> None:
    password = "Correct-Horse-Battery-Staple-42"
    conn = _Conn("10.11.6-MariaDB-0+deb12u1", current_user)
    MysqlSession(conn, ()).set_password("shop_batch", password)
    changes = [(q, p) for q, p in conn.sent if "PASSWORD" in q]
    assert changes and all(password not in str(p) for _, p in changes)
    assert all(native_password_hash(password) in p for _, p in changes)


def test_mysql_gets_its_own_rewritten_statement() -> None:
    """MySQL rewrites ALTER USER ... IDENTIFIED BY before it logs it, and keeps the user's plugin."""
    conn = _Conn("8.0.36", "shop_batch")
    MysqlSession(conn, ()).set_password("shop_batch", "pw-1")
    assert conn.sent[-1] == ("ALTER USER CURRENT_USER() IDENTIFIED BY %s", ("pw-1",))


def test_connect_params_never_show_the_password() -> None:
    assert "tok" not in repr(ConnectParams("h", 5432, "d", "app", "tok"))
    assert str(DbConnectError("auth", "refused")) == "refused"
