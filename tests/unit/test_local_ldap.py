"""The local LDAP responder (the local PostgreSQL's way to hand rdsvend a login's token):
idle connections from any local process never hold up a login, and are closed quickly."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from devtools.local.ldap import LdapResponder

pytestmark = pytest.mark.e2e  # starts a server: not in the fast tier

GOOD = "token-that-checks-out"


def _tlv(tag: int, payload: bytes) -> bytes:
    if len(payload) < 0x80:
        return bytes([tag, len(payload)]) + payload
    size = len(payload).to_bytes((len(payload).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + payload


def _bind(message_id: int, user: str, password: str) -> bytes:
    request = _tlv(0x02, b"\x03") + _tlv(0x04, f"cn={user},dc=rdsvend".encode()) + _tlv(0x80, password.encode())
    return _tlv(0x30, _tlv(0x02, bytes([message_id])) + _tlv(0x60, request))


UNBIND = _tlv(0x30, b"\x02\x01\x09\x42\x00")


def _login(port: int, password: str = GOOD) -> int:
    """One bind and unbind, as PostgreSQL does; the bind's result code."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_bind(1, "app_user", password) + UNBIND)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    index = reply.find(b"\x0a\x01")
    assert index != -1, reply
    return reply[index + 2]


@pytest.fixture
def responder() -> Iterator[LdapResponder]:
    with LdapResponder(lambda user, password: user == "app_user" and password == GOOD) as server:
        yield server


@pytest.mark.parametrize("idle", [32, 200])
def test_idle_connections_do_not_hold_up_a_login(responder: LdapResponder, idle: int) -> None:
    # 32 idle connections once made every login wait (refused as busy) for 10 s at a time
    sockets = [socket.create_connection(("127.0.0.1", responder.port), timeout=5) for _ in range(idle)]
    try:
        assert _login(responder.port) == 0
        assert _login(responder.port, "wrong") == 49  # and refusals still say why
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("opening", [b"", b"\x30"], ids=["nothing", "a first byte"])
def test_a_silent_or_stalled_connection_is_closed_soon(opening: bytes) -> None:
    with LdapResponder(lambda user, password: True, idle_timeout=0.3, timeout=0.6) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(opening)
            started = time.monotonic()
            while sock.recv(65536):
                pass
            waited = time.monotonic() - started
    assert waited < 5  # closed by the responder (was 10 s); the socket's own timeout would raise
