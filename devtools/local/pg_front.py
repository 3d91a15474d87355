"""The local PostgreSQL's endpoint: a front that bounds the connections still logging in, and
otherwise leaves the login to PostgreSQL.

PostgreSQL gives every connection a server process before it has logged in, so a pile of
connections that never finish their login (an idle pool, a stalled script) would lock everyone
out until ``authentication_timeout``. This front listens where the instance's endpoint is and
holds those connections itself, bounded as every local front is (:mod:`devtools.local.tcp_front`:
per address and overall); PostgreSQL listens behind it on another loopback address. Per
connection:

1. the client's SSLRequest goes to PostgreSQL first; when it accepts, the front takes the
   client's TLS with the instance's own certificate and key (so ``verify-full`` and SCRAM
   channel binding see the server they expect) and speaks TLS to PostgreSQL at the client's
   TLS version and cipher (``pg_stat_ssl`` names the client's TLS); a client without TLS is
   passed on as it is, and PostgreSQL refuses it as it does any (``no encryption``);
2. the startup packet (or a cancel request) goes to PostgreSQL unchanged, and PostgreSQL
   decides the login: its authentication requests go to the client, the client's answers back;
   a password message longer than PostgreSQL reads (:data:`~devtools.local.pg_wire.MAX_PASSWORD`)
   gets an error naming the limit instead of a dropped connection;
3. from ``AuthenticationOk`` on the connection is a session and the front relays bytes.

A logged-in session is never closed for being idle (PostgreSQL does not either).
"""
from __future__ import annotations

import logging
import math
import socket
import ssl
import struct
import time
from pathlib import Path

from devtools.local.pg_wire import (
    CANCEL_REQUEST,
    GSSENC_REQUEST,
    SSL_REQUEST,
    PgConnection,
    error_response,
    message_bytes,
)
from devtools.local.tcp_front import FrontSettings, PeerClosedError, TcpFront, server_tls, tls_like

__all__ = ["PG_FRONT_SETTINGS", "PgFront"]

log = logging.getLogger(__name__)

#: The local PostgreSQL's bounds: 40 connections (its ``max_connections`` leaves room for the
#: superuser and for server processes still exiting), no idle limit on sessions.
PG_FRONT_SETTINGS = FrontSettings(max_connections=40, idle_timeout=math.inf)

#: Authentication requests the client must answer: cleartext, MD5, GSS/SSPI, SASL and its continuation.
_ANSWERED = {3, 5, 7, 8, 9, 10, 11}
#: The bound on a message from PostgreSQL during the login (authentication requests, errors).
_MAX_SERVER_MESSAGE = 1024 * 1024


class _Conn(PgConnection):
    front: PgFront

    def login(self) -> bool:
        startup = self._negotiate()
        backend = self._backend()
        self.send(backend, startup)
        if struct.unpack("!I", startup[4:8])[0] == CANCEL_REQUEST:
            self._pass_on_until_closed(backend)  # PostgreSQL answers a cancel request by closing
            return False
        self.user = _user(startup)
        return self._authenticate(backend)

    def _backend(self) -> socket.socket:
        if self.backend is None:
            front = self.front
            # from 127.0.0.1, the address PostgreSQL's pg_hba.conf lets in
            self.backend = socket.create_connection((front.backend_host, front.backend_port or front.port),
                                                    timeout=front.settings.handshake_timeout,
                                                    source_address=(front.host, 0))
        return self.backend

    def _negotiate(self) -> bytes:
        """SSL (and GSS) negotiation; the first other startup packet, whole."""
        while True:
            packet = self.startup_packet()
            (code,) = struct.unpack("!I", packet[4:8])
            tls = isinstance(self.client, ssl.SSLSocket)
            if code == GSSENC_REQUEST and not tls:
                self.send(self.client, b"N")  # no GSSAPI encryption here; the client goes on with SSL or without
                continue
            if code != SSL_REQUEST:
                return packet
            if tls:
                raise PeerClosedError("a second SSL request")
            backend = self._backend()
            self.send(backend, packet)
            answer = self.recv_exact(backend, 1)
            self.send(self.client, answer)
            if answer == b"N":
                continue
            if answer != b"S":  # an error before any TLS (PostgreSQL could not start a server process)
                self._pass_on_until_closed(backend)
                raise PeerClosedError("PostgreSQL refused the connection")
            client = self.start_tls(self.front.tls)
            # the instance's certificate names 127.0.0.1 and localhost, not the address behind the front
            self.backend = tls_like(client, self.front.backend_ca).wrap_socket(backend, server_hostname="localhost")

    def _pass_on_until_closed(self, backend: socket.socket) -> None:
        while True:
            backend.settimeout(max(0.1, self.deadline - time.monotonic()))
            data = backend.recv(65536)
            if not data:
                return
            self.send(self.client, data)

    def _authenticate(self, backend: socket.socket) -> bool:
        """PostgreSQL's authentication, message by message: True at ``AuthenticationOk``."""
        while True:
            kind, body = self.message(backend, _MAX_SERVER_MESSAGE)
            self.send(self.client, message_bytes(kind, body))
            if kind == b"E":
                return False
            if kind != b"R" or len(body) < 4:
                continue  # a notice, a protocol version negotiation
            (request,) = struct.unpack("!I", body[:4])
            if request == 0:
                return True
            if request in _ANSWERED:
                self.send(backend, self.password_message())


def _user(startup: bytes) -> str:
    """The ``user`` a startup packet names ("?" when it names none)."""
    parts = startup[8:].split(b"\0")
    names = dict(zip(parts[0::2], parts[1::2], strict=False))
    return names.get(b"user", b"?").decode("utf-8", "replace")


class PgFront(TcpFront):
    """The endpoint of the local PostgreSQL listening on ``backend_host`` (``backend_port``, by
    default the front's own port number): TLS with ``tls_cert``/``tls_key`` (the instance's),
    PostgreSQL's certificate checked against ``ca_path``."""

    def __init__(self, *, backend_host: str, tls_cert: str | Path, tls_key: str | Path, ca_path: str | Path,
                 backend_port: int | None = None, host: str = "127.0.0.1", port: int = 0,
                 settings: FrontSettings = PG_FRONT_SETTINGS) -> None:
        super().__init__(host=host, port=port, settings=settings, label="postgres front")
        self.backend_host, self.backend_port = backend_host, backend_port
        self.backend_ca = str(ca_path)
        self.tls = server_tls(tls_cert, tls_key)

    def connection(self, client: socket.socket, peer: str) -> _Conn:
        return _Conn(self, client, peer)

    def too_many(self) -> bytes:
        return error_response("53300", "sorry, too many clients already")

