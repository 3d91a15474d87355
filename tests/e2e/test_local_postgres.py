"""End to end: the local RDS-shaped PostgreSQL, the LDAP responder and the token checker.

A real PostgreSQL 15 (TLS, hostssl only), real psycopg clients over ``verify-full``, tokens
made by botocore's ``generate_db_auth_token``; only the AWS side (which keys exist, whether
the signer may connect) is an in-memory stand-in the tests control.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import os
import pwd
import re
import secrets
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import psycopg
import pytest
from cryptography import x509

from devtools.local.ldap import LdapResponder
from devtools.local.postgres import BACKEND_HOST, PostgresCluster
from devtools.local.processes import alive
from devtools.local.rdsauth import RdsInstance, RdsTokenChecker
from devtools.local.sigv4 import Credential, StaticSecretLookup
from devtools.local.stack import listen_table
from devtools.local.tls import make_tls_material

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"
REGION = "us-east-1"
RESOURCE_ID = "db-LOCALE2E0000000000000000"
LONG = Credential("AKIAE2ELONGTERM00001", "e2e/long+secret0000000000000000000000000", None,
                  f"arn:aws:iam::{ACCOUNT}:user/ops", ACCOUNT)
SESSION = Credential("ASIAE2ESESSION000001", "e2e/session+secret00000000000000000000000",
                     "IQoJb3JpZ2luX2VjE" + secrets.token_urlsafe(800) + "==",
                     f"arn:aws:sts::{ACCOUNT}:assumed-role/rdsvend-signer/vend", ACCOUNT)


class ShiftedClock:
    """The real time plus an offset the tests move (tokens are signed at the real time)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        return 0.0


class Permissions:
    """``rds-db:connect`` as the tests decide: allowed unless the dbuser ARN is in ``denied``."""

    def __init__(self) -> None:
        self.denied: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def __call__(self, credential: Credential, arn: str) -> tuple[bool, str]:
        self.calls.append((credential.principal_arn, arn))
        return (arn not in self.denied, "test permissions")


class Stack:
    def __init__(self, pg: PostgresCluster, responder: LdapResponder, checker: RdsTokenChecker,
                 clock: ShiftedClock, permissions: Permissions) -> None:
        self.pg, self.responder, self.checker = pg, responder, checker
        self.clock, self.permissions = clock, permissions


@functools.cache
def _rds(cred: Credential) -> Any:
    session = botocore.session.Session()
    session.set_credentials(cred.access_key_id, cred.secret_key, cred.session_token)
    return session.create_client("rds", region_name=REGION)


def make_token(cred: Credential, host: str, port: int, user: str, region: str = REGION) -> str:
    return str(_rds(cred).generate_db_auth_token(host, port, user, region))


def listening(port: int) -> list[str]:
    """Local addresses with a TCP listener on ``port``."""
    return [addr for addr, p, _inode in listen_table() if p == port]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    clock, permissions = ShiftedClock(), Permissions()
    holder: dict[str, RdsTokenChecker] = {}
    with LdapResponder(lambda user, password: holder["checker"].check(user, password)) as responder:
        with PostgresCluster(ldap_port=responder.port) as pg:
            instance = RdsInstance(REGION, ACCOUNT, RESOURCE_ID, frozenset({"localhost", "127.0.0.1"}), pg.port, "e2e")
            holder["checker"] = RdsTokenChecker(StaticSecretLookup([LONG, SESSION]), endpoints=instance,
                                                permission_check=permissions, clock=clock)
            pg.create_iam_user("app_user")
            pg.create_iam_user("other_user")
            yield Stack(pg, responder, holder["checker"], clock, permissions)


@pytest.fixture
def stack_state(stack: Stack) -> Iterator[Stack]:
    """Leave the clock and the permissions as they were after each test."""
    yield stack
    stack.clock.offset = timedelta(0)
    stack.permissions.denied.clear()


def connect(pg: PostgresCluster, user: str, password: str, **extra: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(pg.dsn(user, **extra), password=password, autocommit=True)


def refused(pg: PostgresCluster, user: str, password: str, **extra: Any) -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        connect(pg, user, password, **extra).close()
    return str(info.value)


@pytest.fixture
def why(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """``why()``: the reasons the token checker logged for the logins it refused since the last
    call, in order ("rds token login refused: ... reason=wrong_user ...")."""
    caplog.set_level(logging.INFO, logger="devtools.local.rdsauth")
    caplog.clear()

    def reasons() -> list[str]:
        found = [re.search(r"reason=(.*?) principal=", record.getMessage()) for record in caplog.records
                 if record.name == "devtools.local.rdsauth" and "login refused" in record.getMessage()]
        caplog.clear()
        return [match.group(1) for match in found if match]

    return reasons


# --- IAM logins ---------------------------------------------------------------------------

@pytest.mark.parametrize("cred", [LONG, SESSION], ids=["long-term", "session"])
def test_iam_user_logs_in_with_a_token_over_verify_full(stack_state: Stack, cred: Credential) -> None:
    pg = stack_state.pg
    token = make_token(cred, "localhost", pg.port, "app_user")
    with connect(pg, "app_user", token) as conn:
        row = conn.execute(
            "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row == ("app_user", True)
    assert stack_state.permissions.calls[-1] == (
        cred.principal_arn, f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RESOURCE_ID}/app_user")


def test_postgres_ldap_takes_a_session_token_of_one_and_a_half_kilobytes(stack_state: Stack) -> None:
    pg = stack_state.pg
    token = make_token(SESSION, "127.0.0.1", pg.port, "app_user")
    assert len(token) > 1400
    with connect(pg, "app_user", token, host="127.0.0.1") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app_user",)


def test_tampered_token_is_refused(stack_state: Stack, why: Callable[[], list[str]]) -> None:
    pg = stack_state.pg
    token = make_token(LONG, "localhost", pg.port, "app_user")
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert 'LDAP authentication failed for user "app_user"' in refused(pg, "app_user", tampered)
    assert why() == ["signature:bad_signature"]


def test_expired_token_is_refused(stack_state: Stack, why: Callable[[], list[str]]) -> None:
    pg = stack_state.pg
    token = make_token(LONG, "localhost", pg.port, "app_user")
    stack_state.clock.offset = timedelta(seconds=901)
    refused(pg, "app_user", token)
    assert why() == ["signature:expired"]
    stack_state.clock.offset = timedelta(seconds=0)
    connect(pg, "app_user", token).close()
    assert why() == []


def test_token_for_another_user_is_refused(stack_state: Stack, why: Callable[[], list[str]]) -> None:
    pg = stack_state.pg
    refused(pg, "app_user", make_token(LONG, "localhost", pg.port, "other_user"))
    refused(pg, "other_user", make_token(LONG, "localhost", pg.port, "app_user"))
    assert why() == ["wrong_user", "wrong_user"]


def test_token_for_another_host_or_port_is_refused(stack_state: Stack, why: Callable[[], list[str]]) -> None:
    pg = stack_state.pg
    refused(pg, "app_user", make_token(LONG, "db.elsewhere.example", pg.port, "app_user"))
    refused(pg, "app_user", make_token(LONG, "localhost", pg.port + 1, "app_user"))
    refused(pg, "app_user", make_token(LONG, "localhost", pg.port, "app_user", region="eu-west-1"))
    assert why() == ["wrong_host", "wrong_host", "wrong_region"]


def test_token_the_signer_may_not_use_is_refused(stack_state: Stack, why: Callable[[], list[str]]) -> None:
    pg = stack_state.pg
    stack_state.permissions.denied.add(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RESOURCE_ID}/app_user")
    refused(pg, "app_user", make_token(SESSION, "localhost", pg.port, "app_user"))
    assert why() == ["not_permitted:test permissions"]


def test_token_from_an_unknown_key_is_refused(stack_state: Stack, why: Callable[[], list[str]]) -> None:
    pg = stack_state.pg
    stranger = Credential("AKIASTRANGER00000001", "x" * 40, None, "arn:aws:iam::123456789012:user/s", ACCOUNT)
    refused(pg, "app_user", make_token(stranger, "localhost", pg.port, "app_user"))
    assert why() == ["signature:unknown_key"]


def test_refusals_are_logged_without_the_token(stack_state: Stack, caplog: pytest.LogCaptureFixture,
                                               why: Callable[[], list[str]]) -> None:
    pg = stack_state.pg
    token = make_token(SESSION, "localhost", pg.port, "app_user")
    caplog.set_level(logging.DEBUG, logger="devtools.local")
    refused(pg, "other_user", token)
    assert "reason=wrong_user" in caplog.text
    server_log = pg.log_text()
    for text in (caplog.text, server_log):
        assert SESSION.session_token is not None and SESSION.session_token not in text
        assert token.rsplit("=", 1)[1] not in text
        assert "X-Amz-Signature" not in text


# --- passwords, TLS, the superuser --------------------------------------------------------

def test_password_user_logs_in_with_its_password_and_iam_users_cannot(stack_state: Stack,
                                                                      why: Callable[[], list[str]]) -> None:
    pg = stack_state.pg
    password = secrets.token_urlsafe(18)
    pg.create_password_user("pw_user", password)
    # SCRAM with channel binding: the front shows clients the instance's own certificate
    with connect(pg, "pw_user", password, channel_binding="require") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pw_user",)
    assert "password authentication failed" in refused(pg, "pw_user", password + "x")
    assert why() == []  # a password user never reaches the token checker
    pg.run_sql("ALTER ROLE other_user PASSWORD 'a-password-1'")
    assert "LDAP authentication failed" in refused(pg, "other_user", "a-password-1")
    assert why() == ["signature:missing"]  # a password is not a presigned URL


def test_plain_connections_are_refused(stack_state: Stack) -> None:
    pg = stack_state.pg
    password = secrets.token_urlsafe(18)
    pg.create_password_user("plain_user", password)
    message = refused(pg, "plain_user", password, sslmode="disable")
    assert "no encryption" in message


def test_a_running_query_is_cancelled_through_the_front(stack_state: Stack) -> None:
    # cancel_safe: libpq's cancel over TLS, waited for without holding the GIL (the old
    # cancel() blocks the whole process until the server answers: here the front is in it)
    with psycopg.connect(stack_state.pg.admin_dsn, autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(20)")
        finally:
            timer.cancel()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_superuser_dsn_and_rds_roles(stack_state: Stack) -> None:
    pg = stack_state.pg
    assert "sslmode=verify-full" in pg.admin_dsn and str(pg.ca_path) in pg.admin_dsn
    rows = dict(pg.run_sql("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('rds_iam', 'rds_ad')"))
    assert rows == {"rds_iam": False, "rds_ad": False}
    # PostgreSQL behind its front, on the endpoint's port number (SHOW port names it, as on RDS)
    assert pg.run_sql("SHOW listen_addresses") == [(BACKEND_HOST,)]
    assert pg.run_sql("SHOW port") == [(str(pg.port),)]
    assert pg.run_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(True,)]


def test_only_loopback_listens(stack_state: Stack) -> None:
    assert set(listening(stack_state.pg.port)) == {"127.0.0.1", BACKEND_HOST}
    assert ipaddress.ip_address(BACKEND_HOST).is_loopback
    assert set(listening(stack_state.responder.port)) == {"127.0.0.1"}


# --- the LDAP responder on the wire -------------------------------------------------------

def _tlv(tag: int, payload: bytes) -> bytes:
    if len(payload) < 0x80:
        return bytes([tag, len(payload)]) + payload
    size = len(payload).to_bytes((len(payload).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + payload


def _bind(message_id: int, dn: str, password: str) -> bytes:
    request = _tlv(0x02, b"\x03") + _tlv(0x04, dn.encode()) + _tlv(0x80, password.encode())
    return _tlv(0x30, _tlv(0x02, bytes([message_id])) + _tlv(0x60, request))


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the responder closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _result_codes(reply: bytes) -> list[int]:
    codes = []
    index = reply.find(b"\x0a\x01")
    while index != -1:
        codes.append(reply[index + 2])
        index = reply.find(b"\x0a\x01", index + 3)
    return codes


def test_responder_answers_binds_and_refuses_the_rest(stack_state: Stack) -> None:
    port = stack_state.responder.port
    token = make_token(LONG, "localhost", stack_state.pg.port, "app_user")
    unbind = _tlv(0x30, b"\x02\x01\x09\x42\x00")
    assert _result_codes(_exchange(port, _bind(1, "cn=app_user,dc=rdsvend", token) + unbind)) == [0]
    assert _result_codes(_exchange(port, _bind(2, "cn=app_user,dc=rdsvend", token + "x") + unbind)) == [49]
    assert _result_codes(_exchange(port, _bind(3, "uid=app_user,dc=rdsvend", token) + unbind)) == [49]
    assert _result_codes(_exchange(port, _bind(4, "cn=app_user,dc=rdsvend", "") + unbind)) == [49]
    search = _tlv(0x30, _tlv(0x02, b"\x05") + _tlv(0x63, _tlv(0x04, b"dc=rdsvend")))
    notice = _exchange(port, search)
    assert b"1.3.6.1.4.1.1466.20036" in notice and _result_codes(notice) == [2]
    oversized = b"\x30\x83" + (20 * 1024).to_bytes(3, "big")
    assert _result_codes(_exchange(port, oversized)) == [2]
    assert _exchange(port, b"\x30\x80\x00\x00") != b""


def test_idle_connections_to_the_responder_do_not_block_iam_logins(stack_state: Stack) -> None:
    # any local process could once hold every responder slot with 32 idle connections
    idle = [socket.create_connection(("127.0.0.1", stack_state.responder.port), timeout=5) for _ in range(32)]
    try:
        token = make_token(LONG, "localhost", stack_state.pg.port, "app_user")
        with connect(stack_state.pg, "app_user", token) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("app_user",)
    finally:
        for sock in idle:
            sock.close()


# --- lifecycle ----------------------------------------------------------------------------

def test_without_a_responder_iam_logins_fail_closed_and_stop_leaves_nothing() -> None:
    with PostgresCluster() as pg:
        base, port, pid = pg.base_dir, pg.port, pg.pid
        assert pid is not None
        assert base.is_dir() and listening(port)
        pg.create_iam_user("iam_only")
        assert "pg_hba.conf rejects connection" in refused(pg, "iam_only", "anything")
    assert not base.exists()
    assert listening(port) == []
    assert not alive(pid)  # gone, or a zombie only init has still to reap


# --- TLS material -------------------------------------------------------------------------

def test_server_key_is_private_to_postgres(stack_state: Stack) -> None:
    key = stack_state.pg.base_dir / "tls" / "server.key"
    info = key.stat()
    assert info.st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        assert info.st_uid == pwd.getpwnam("postgres").pw_uid


def test_certificate_names_localhost_loopback_and_extra_names(tmp_path: Path) -> None:
    material = make_tls_material(tmp_path / "tls", extra_names=["Orders.abc.us-east-1.rds.amazonaws.com", "10.1.2.3"],
                                 owner=None)
    cert = x509.load_pem_x509_certificate(material.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "orders.abc.us-east-1.rds.amazonaws.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")]
    ca = x509.load_pem_x509_certificate(material.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert not (tmp_path / "tls" / "ca.key").exists() and sorted(p.name for p in (tmp_path / "tls").iterdir()) == [
        "ca.crt", "server.crt", "server.key"]


# --- connections that never finish their login, oversized tokens ------------------------------

def _stalled(pg: PostgresCluster, source: str) -> socket.socket:
    """A connection from ``source`` that asks for TLS, sends its startup packet for ``app_user``
    and then never answers the password request (PostgreSQL holds a server process for it)."""
    sock = socket.create_connection(("127.0.0.1", pg.port), timeout=5, source_address=(source, 0))
    sock.sendall(struct.pack("!II", 8, 80877103))
    if sock.recv(1) != b"S":
        return sock
    tls = ssl.create_default_context(cafile=str(pg.ca_path)).wrap_socket(sock, server_hostname="localhost")
    body = struct.pack("!I", 196608) + b"user\0app_user\0database\0postgres\0\0"
    tls.sendall(struct.pack("!I", len(body) + 4) + body)
    tls.recv(1)  # the password request (or a refusal)
    return tls


def test_connections_from_one_address_that_never_log_in_never_lock_another_address_out(stack_state: Stack) -> None:
    pg = stack_state.pg
    token = make_token(LONG, "localhost", pg.port, "app_user")
    pile: list[socket.socket] = []
    try:
        pile += [_stalled(pg, "127.0.0.2") for _ in range(45)]  # more than max_connections, in their login
        pile += [socket.create_connection(("127.0.0.1", pg.port), timeout=5, source_address=("127.0.0.2", 0))
                 for _ in range(300)]  # and silent ones: each once held a server process for a minute
        # at once, not after authentication_timeout: they used to leave no server process to log in with
        with connect(pg, "app_user", token) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("app_user",)
    finally:
        for sock in pile:
            sock.close()


def test_idle_connections_from_the_logins_own_address_give_way_to_it(stack_state: Stack) -> None:
    pg = stack_state.pg
    token = make_token(LONG, "localhost", pg.port, "app_user")
    idle = [socket.create_connection(("127.0.0.1", pg.port), timeout=5) for _ in range(300)]
    try:
        with connect(pg, "app_user", token) as conn:  # at once: it takes the slot of the one waiting longest
            assert conn.execute("SELECT current_user").fetchone() == ("app_user",)
    finally:
        for sock in idle:
            sock.close()


def test_a_70_kb_token_gets_an_error_naming_the_limit_not_a_dropped_connection(stack_state: Stack) -> None:
    message = refused(stack_state.pg, "app_user", "x" * 70 * 1024)
    assert "password message of 71681 bytes is too long: PostgreSQL reads at most 65535 bytes" in message
    with connect(stack_state.pg, "app_user", make_token(LONG, "localhost", stack_state.pg.port, "app_user")):
        pass  # and the next login is served
