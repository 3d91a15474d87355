"""The PostgreSQL RDS Proxy front against hostile and broken clients: each gets a precise
refusal or a closed connection, never a hang, and the front keeps serving; a token it refuses
never reaches the target and never appears in what the client or the log sees."""
from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devtools.local.pg_proxy import PgProxyFront, ProxyTarget
from devtools.local.postgres import free_port
from devtools.local.tcp_front import FrontSettings
from devtools.local.tls import TlsMaterial, make_tls_material

pytestmark = pytest.mark.e2e  # the front listens on a loopback port


#: the proxy front, its TLS material and the users it signed for
Front = tuple[PgProxyFront, TlsMaterial, list[str]]


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    tls = make_tls_material(tmp_path_factory.mktemp("proxy-tls"), owner=None)
    signed: list[str] = []
    dead_port = free_port()  # a target port nothing listens on

    def sign(host: str, port: int, user: str) -> str:
        signed.append(user)
        return "proxy-token"

    proxy = PgProxyFront(name="p1", tls_cert=tls.server_cert, tls_key=tls.server_key,
                         target=ProxyTarget("127.0.0.1", dead_port, str(tls.ca_cert)),
                         check=lambda user, token: token == "good-token",
                         sign=sign, settings=FrontSettings(handshake_timeout=2))
    with proxy:
        yield proxy, tls, signed


def _talk(front: PgProxyFront, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        except ConnectionResetError:  # closed with our bytes unread: a reset, as good as a close
            pass
        return b"".join(chunks)


def _dsn(front: PgProxyFront, tls: TlsMaterial, password: str, **extra: Any) -> dict[str, Any]:
    return dict(host="localhost", port=front.port, user="orders_app", password=password, dbname="orders",
                sslmode="verify-full", sslrootcert=str(tls.ca_cert), connect_timeout=5, **extra)


@pytest.mark.parametrize("payload", [
    b"\x00\x00\x00\x02garbage",                     # a length below the minimum
    struct.pack("!II", 2_000_000, 196608),            # an oversized startup packet
    struct.pack("!II", 8, 1234),                      # an unknown protocol
    b"",                                              # nothing at all
])
def test_broken_startups_are_dropped_and_the_front_keeps_serving(front: Front,
                                                                 payload: bytes) -> None:
    proxy, tls, _ = front
    assert _talk(proxy, payload) == b""
    with pytest.raises(psycopg.OperationalError, match="leg 1: caller to proxy"):
        psycopg.connect(**_dsn(proxy, tls, "bad-token")).close()


def test_a_refused_token_never_reaches_the_target_nor_the_log(front: Front,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    proxy, tls, signed = front
    caplog.set_level(logging.INFO)
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(**_dsn(proxy, tls, "secret-looking-token-AKIA")).close()
    assert "leg 1" in str(err.value) and "secret-looking-token-AKIA" not in str(err.value)
    assert "secret-looking-token-AKIA" not in caplog.text and "leg1:token_refused" in caplog.text
    assert signed == []


def test_an_unreachable_target_is_a_leg_two_refusal(front: Front) -> None:
    proxy, tls, signed = front
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(**_dsn(proxy, tls, "good-token")).close()
    assert 'RDS Proxy "p1" could not log in to its target as "orders_app" (leg 2: proxy to target)' in str(err.value)


def test_without_tls_the_proxy_refuses(front: Front) -> None:
    proxy, tls, _ = front
    with pytest.raises(psycopg.OperationalError, match='RDS Proxy "p1" requires TLS'):
        psycopg.connect(**{**_dsn(proxy, tls, "good-token"), "sslmode": "disable"}).close()


def test_tls_to_the_proxy_is_verified_by_the_client(front: Front,
                                                    tmp_path: Path) -> None:
    proxy, _, _ = front
    other = make_tls_material(tmp_path / "other", owner=None)
    ctx = ssl.create_default_context(cafile=str(other.ca_cert))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(struct.pack("!II", 8, 80877103))
        assert sock.recv(1) == b"S"
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(sock, server_hostname="localhost")


def test_a_70_kb_token_gets_an_error_naming_the_limit_not_a_dropped_connection(front: Front) -> None:
    proxy, tls, signed = front
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(**_dsn(proxy, tls, "x" * 70 * 1024)).close()
    assert "password message of 71681 bytes is too long: PostgreSQL reads at most 65535 bytes" in str(err.value)
    assert signed == []


def test_idle_connections_from_another_address_never_lock_logins_out(front: Front) -> None:
    proxy, tls, _ = front
    pile = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5, source_address=("127.0.0.2", 0))
            for _ in range(40)]  # more than the proxy's 32 slots, none of them logging in
    try:
        # the login gets its answer at once (leg 1 refuses the token), not a closed connection
        with pytest.raises(psycopg.OperationalError, match="leg 1: caller to proxy"):
            psycopg.connect(**_dsn(proxy, tls, "bad-token")).close()
    finally:
        for sock in pile:
            sock.close()
