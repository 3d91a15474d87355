"""An RDS-like front for the local MariaDB: TLS, IAM tokens through ``mysql_clear_password``.

RDS for MySQL and MariaDB checks an IAM token inside the server (``AWSAuthenticationPlugin``),
which no stock server has. This front stands where RDS's endpoint stands, on a loopback port,
and speaks the MySQL protocol's connection phase itself; after a successful login it only
relays bytes between the client and the backend mariadbd (which listens on a private unix
socket, see :mod:`devtools.local.mariadb`). Per connection:

1. connect to the backend and read its greeting; greet the client with the backend's
   version and capabilities, plus ``CLIENT_SSL`` (minus compression and connect attributes);
2. require the client's SSL request and wrap the socket in TLS with the local CA's server
   certificate; a client that does not ask for TLS is refused with 3159, as RDS does with
   ``require_secure_transport``;
3. read the handshake response and switch the client to ``mysql_clear_password`` (the
   password travels inside TLS); tokens of several KB are fine (the bound is 64 KB);
4. IAM users (the backend says so: ``AWSAuthenticationPlugin`` in the user's authentication)
   log in only when the token passes the stack's :class:`~devtools.local.rdsauth.RdsTokenChecker`
   (the same checker, and the same reasons, as the PostgreSQL side); the instance must have
   IAM authentication enabled (else 1524, "plugin not loaded", as on RDS); other users log in
   with their password, checked by the backend; a token offered for a non-IAM user is 1045;
5. authenticate to the backend (``mysql_native_password`` over the socket, inside TLS at the
   client's TLS version, so that ``SHOW STATUS LIKE 'Ssl_version'`` and ``Ssl_cipher`` name
   the session's TLS as on RDS) and hand the client the backend's OK or error; then relay both
   ways.

Every refusal is logged with its reason (the checker logs its own); the token never is.
Bounded as every local front is (:mod:`devtools.local.tcp_front`: a login deadline, an idle
timeout, connection slots and a per-address bound on connections still logging in; when every
slot holds a logged-in session the next connection gets 1040 "Too many connections"), plus a
packet size limit during the handshake: a packet over it of up to
:data:`~devtools.local.tcp_front.DRAIN_LIMIT` bytes is read and answered with 1153 naming the
limit, not cut off.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import ssl
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from devtools.local.mysql_wire import (
    CLEAR,
    CLIENT_COMPRESS,
    CLIENT_CONNECT_ATTRS,
    CLIENT_CONNECT_WITH_DB,
    CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC,
    CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION,
    CLIENT_SSL,
    IAM_PLUGIN,
    NATIVE,
    TOKEN_SHAPE,
    Greeting,
    Login,
    LoginRefusedError,
    PeerClosedError,
    Reader,
    err_packet,
    lenenc_int,
    native_scramble,
    parse_greeting,
    parse_login,
)
from devtools.local.relay import relay
from devtools.local.tcp_front import FrontConnection, FrontSettings, TcpFront, server_tls, tls_like

__all__ = ["MysqlFront", "FrontSettings", "BackendLink", "PacketChannel", "UnixSocketLink", "backend_handshake",
           "native_scramble"]

log = logging.getLogger(__name__)


#: ``(user) -> plugins`` of a backend user (None: no such user), ``() -> bool`` IAM auth on,
#: ``(user, token) -> bool`` the token checker, ``(user) -> password`` the backend way in.
PluginLookup = Callable[[str], "tuple[str, ...] | None"]


class _Conn(FrontConnection):
    """One client connection through the front."""

    front: MysqlFront

    # --- framing --------------------------------------------------------------------------
    def read_packet(self, sock: socket.socket) -> tuple[int, bytes]:
        head = self.recv_exact(sock, 4)
        length = int.from_bytes(head[:3], "little")
        limit = self.front.settings.max_handshake_packet
        if length > limit:
            self.drain(sock, length)
            refused = LoginRefusedError(1153, "08S01", f"Got a packet of {length} bytes during the login, bigger "
                                        f"than the {limit} bytes a login packet may have", "packet_too_big")
            refused.seq = head[3]  # the answer follows this packet
            raise refused
        return head[3], self.recv_exact(sock, length) if length else b""

    def write_packet(self, sock: socket.socket, seq: int, payload: bytes) -> None:
        self.send(sock, len(payload).to_bytes(3, "little") + bytes([seq & 0xFF]) + payload)

    # --- the connection phase -------------------------------------------------------------
    def run(self) -> None:
        seq = 0
        user = "?"
        try:
            self.backend = self.front.link.connect(self.front.settings.handshake_timeout)
            _, greeting_payload = self.read_packet(self.backend)
            if greeting_payload[:1] == b"\xff":
                raise LoginRefusedError(1040, "08004", "Too many connections", "backend_refused")
            greeting = parse_greeting(greeting_payload)
            nonce = bytes(secrets.choice(range(33, 127)) for _ in range(20))
            self.write_packet(self.client, 0, self._client_greeting(greeting, nonce))
            seq, first = self.read_packet(self.client)
            if len(first) < 32:
                raise PeerClosedError("short handshake response")
            caps = int.from_bytes(first[:4], "little")
            if not caps & CLIENT_SSL:
                try:
                    user = parse_login(first).user
                except (PeerClosedError, LoginRefusedError):
                    pass
                raise LoginRefusedError(3159, "HY000", "Connections using insecure transport are prohibited while "
                               "--require_secure_transport=ON.", "insecure_transport")
            self.start_tls(self.front.tls)
            seq, payload = self.read_packet(self.client)
            login = parse_login(payload)
            user = login.user
            if not login.caps & CLIENT_PROTOCOL_41:
                raise LoginRefusedError(1251, "08004", "Client does not support the 4.1 protocol", "old_protocol")
            password, seq = self._cleartext(login, seq)
            ok, seq = self._authenticate(login, password, greeting, seq)
            self.write_packet(self.client, seq + 1, ok)
            self.front.logged_in(self)
        except LoginRefusedError as exc:
            self.front.refused(user, self.peer, exc.reason)
            self._send_error((exc.seq if exc.seq is not None else seq) + 1, exc)
            self.close()
            return
        except (PeerClosedError, TimeoutError, OSError, ssl.SSLError) as exc:
            log.info("%s: connection from %s dropped during login (user=%r): %s", self.front.label,
                     self.peer, user, type(exc).__name__ if not isinstance(exc, PeerClosedError) else exc)
            self.close()
            return
        self._relay()

    def _client_greeting(self, g: Greeting, nonce: bytes) -> bytes:
        caps = (g.caps | CLIENT_SSL | CLIENT_PLUGIN_AUTH | CLIENT_SECURE_CONNECTION) & ~(
            CLIENT_COMPRESS | CLIENT_CONNECT_ATTRS)
        return b"".join([
            b"\x0a", g.version, b"\0", g.conn_id, nonce[:8], b"\0", struct.pack("<H", caps & 0xFFFF),
            bytes([g.charset]), g.status, struct.pack("<H", caps >> 16), bytes([21]), g.reserved,
            nonce[8:], b"\0", NATIVE, b"\0",
        ])

    def _cleartext(self, login: Login, seq: int) -> tuple[str, int]:
        """The password in clear: the first answer if the client spoke cleartext, else ask for it."""
        if login.plugin == CLEAR:
            raw = login.auth
        else:
            if not login.caps & CLIENT_PLUGIN_AUTH:
                raise LoginRefusedError(1251, "08004", "Client does not support authentication plugins",
                                        "no_plugin_auth")
            seq += 1
            self.write_packet(self.client, seq, b"\xfe" + CLEAR + b"\0")
            seq, raw = self.read_packet(self.client)
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        try:
            return raw.decode("utf-8"), seq
        except UnicodeDecodeError:
            raise LoginRefusedError(1045, "28000", f"Access denied for user '{login.user}'",
                                    "password_not_utf8") from None

    def _authenticate(self, login: Login, password: str, g: Greeting, seq: int) -> tuple[bytes, int]:
        front = self.front
        denied = LoginRefusedError(1045, "28000", f"Access denied for user '{login.user}'@'{self.peer}' "
                          "(using password: YES)", "")
        try:
            plugins = front.plugins(login.user)
        except Exception as exc:  # noqa: BLE001 - cannot tell who this is: refuse
            denied.reason = f"could_not_check:{type(exc).__name__}"
            raise denied from None
        if plugins is not None and IAM_PLUGIN in plugins:
            if not front.iam_enabled():
                raise LoginRefusedError(1524, "HY000", f"Plugin '{IAM_PLUGIN}' is not loaded", "iam_auth_disabled")
            if not front.check(login.user, password):  # the checker logs its reason
                denied.reason = "token_refused"
                raise denied
            secret = front.backend_password(login.user)
        else:
            if TOKEN_SHAPE.search(password):
                denied.reason = ("not_iam_user: the user is not identified with AWSAuthenticationPlugin"
                                 if plugins is not None else "unknown_user")
                raise denied
            secret = password
        return self.front.link.login(self, login, secret, g), seq

    def refused(self, user: str, reason: str) -> None:
        self.front.refused(user, self.peer, reason)

    def _send_error(self, seq: int, exc: LoginRefusedError) -> None:
        try:
            self.write_packet(self.client, seq, err_packet(exc.errno, exc.sqlstate, exc.message))
        except (OSError, ssl.SSLError):
            pass

    # --- after login: bytes both ways -----------------------------------------------------
    def _relay(self) -> None:
        assert self.backend is not None
        relay(self.client, self.backend, stopping=self.front.stopping, idle_timeout=self.front.settings.idle_timeout,
              label=self.front.label, peer=self.peer)


class PacketChannel(Protocol):
    """One client connection as a :class:`BackendLink` sees it: packets to and from its backend."""

    client: socket.socket
    backend: socket.socket | None

    def read_packet(self, sock: socket.socket) -> tuple[int, bytes]: ...

    def write_packet(self, sock: socket.socket, seq: int, payload: bytes) -> None: ...

    def refused(self, user: str, reason: str) -> None: ...


class BackendLink(Protocol):
    """How the front reaches its backend and logs the client in there."""

    def connect(self, timeout: float) -> socket.socket:
        """A connected socket whose first packet is the backend's greeting."""

    def login(self, channel: PacketChannel, login: Login, password: str, greeting: Greeting) -> bytes:
        """Log ``login.user`` in with ``password``; the backend's OK or ERR packet."""


def backend_handshake(login: Login, greeting: Greeting, auth: bytes, plugin: bytes, *, extra_caps: int = 0) -> bytes:
    """A handshake response to the backend for the client's ``login``, with ``auth`` for ``plugin``."""
    caps = (login.caps & ~(CLIENT_SSL | CLIENT_CONNECT_ATTRS | CLIENT_COMPRESS)
            | CLIENT_PLUGIN_AUTH | CLIENT_SECURE_CONNECTION | extra_caps) & greeting.caps
    parts = [struct.pack("<I", caps), login.max_packet, bytes([login.charset]), login.filler,
             login.user.encode("utf-8"), b"\0"]
    parts.append(lenenc_int(len(auth)) + auth if caps & CLIENT_PLUGIN_AUTH_LENENC else bytes([len(auth)]) + auth)
    if caps & CLIENT_CONNECT_WITH_DB:
        parts += [login.database or b"", b"\0"]
    parts += [plugin, b"\0"]
    return b"".join(parts)


class UnixSocketLink:
    """The local MariaDB's backend mariadbd on its private unix socket (mysql_native_password),
    inside TLS when ``backend_ca`` is given and the client came in over TLS."""

    def __init__(self, path: str | os.PathLike[str], backend_ca: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.backend_ca = str(backend_ca) if backend_ca is not None else None

    def _tls(self, channel: PacketChannel, login: Login, greeting: Greeting) -> int:
        """TLS to the backend too (when it offers it), at the client's TLS version and (TLS 1.2)
        cipher: the session's ``Ssl_version`` and ``Ssl_cipher`` then name the client's TLS, as
        on RDS, where the client's TLS ends in the server. Returns the CLIENT_SSL capability to
        add to the handshake (0 without TLS)."""
        client, backend = channel.client, channel.backend
        assert backend is not None
        if self.backend_ca is None or not greeting.caps & CLIENT_SSL or not isinstance(client, ssl.SSLSocket):
            return 0
        caps = (login.caps & ~(CLIENT_SSL | CLIENT_CONNECT_ATTRS | CLIENT_COMPRESS)
                | CLIENT_PLUGIN_AUTH | CLIENT_SECURE_CONNECTION | CLIENT_SSL) & greeting.caps
        channel.write_packet(backend, 1, struct.pack("<I", caps) + login.max_packet + bytes([login.charset])
                             + login.filler)
        context = tls_like(client, self.backend_ca)
        context.check_hostname = False  # a private unix socket: the CA is the backend's own
        channel.backend = context.wrap_socket(backend)
        return CLIENT_SSL

    def connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(self.path))
        return sock

    def login(self, channel: PacketChannel, login: Login, password: str, greeting: Greeting) -> bytes:
        tls = self._tls(channel, login, greeting)
        backend = channel.backend
        assert backend is not None
        channel.write_packet(backend, 2 if tls else 1, backend_handshake(
            login, greeting, native_scramble(password.encode("utf-8"), greeting.nonce), NATIVE, extra_caps=tls))
        bseq, answer = channel.read_packet(backend)
        if answer[:1] == b"\xfe":  # the backend wants another round of native auth
            r = Reader(answer[1:])
            plugin = r.cstring(optional=True)
            if plugin != NATIVE:
                raise LoginRefusedError(1045, "28000", f"Access denied for user '{login.user}'", "backend_plugin")
            nonce = r.data[r.pos:].rstrip(b"\0")
            channel.write_packet(backend, bseq + 1, native_scramble(password.encode("utf-8"), nonce))
            bseq, answer = channel.read_packet(backend)
        if answer[:1] == b"\xff":
            channel.refused(login.user, f"backend_error:{int.from_bytes(answer[1:3], 'little')}")
        elif answer[:1] != b"\x00":
            raise PeerClosedError("unexpected backend answer")
        return answer


class MysqlFront(TcpFront):
    """The RDS-like MySQL endpoint on ``127.0.0.1`` (a free port unless one is given).

    ``backend_socket``: the backend mariadbd's unix socket (``backend_ca``: its TLS CA, to reach
    it over TLS); or ``link``: another way to the backend (the RDS Proxy front reaches its
    target over TCP and TLS)."""

    def __init__(self, *, backend_socket: str | os.PathLike[str] | None = None, tls_cert: str | os.PathLike[str],
                 tls_key: str | os.PathLike[str], plugins: PluginLookup, check: Callable[[str, str], bool],
                 backend_password: Callable[[str], str], iam_enabled: Callable[[], bool] = lambda: True,
                 host: str = "127.0.0.1", port: int = 0, settings: FrontSettings | None = None,
                 link: BackendLink | None = None, label: str = "mysql front",
                 backend_ca: str | os.PathLike[str] | None = None) -> None:
        if link is None:
            if backend_socket is None:
                raise ValueError("the mysql front needs a backend_socket or a link")
            link = UnixSocketLink(backend_socket, backend_ca=backend_ca)
        super().__init__(host=host, port=port, settings=settings or FrontSettings(), label=label)
        self.link = link
        self.plugins = plugins
        self.check = check
        self.backend_password = backend_password
        self.iam_enabled = iam_enabled
        self.tls = server_tls(tls_cert, tls_key)

    def connection(self, client: socket.socket, peer: str) -> _Conn:
        return _Conn(self, client, peer)

    def too_many(self) -> bytes:
        payload = err_packet(1040, "08004", "Too many connections")
        return len(payload).to_bytes(3, "little") + b"\0" + payload

    def refused(self, user: str, peer: str, reason: str) -> None:
        log.warning("%s: login refused: user=%r peer=%s reason=%s", self.label, user, peer, reason)
