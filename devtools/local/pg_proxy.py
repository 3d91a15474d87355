"""The local stack's RDS Proxy front for PostgreSQL: two IAM legs, each checked where RDS does.

It stands where an RDS Proxy endpoint stands, on a loopback port with its own certificate,
and speaks PostgreSQL's startup protocol itself. Per connection:

1. TLS is required (``RequireTLS``): an SSLRequest is answered ``S`` and the socket wrapped;
   a client without TLS is refused;
2. the client is asked for a cleartext password (inside TLS) and gives its IAM token;
3. the proxy is read live from the local RDS: gone, not available, or its target not
   registered, the login is refused (``proxy.target``);
4. **leg 1**: the token must be signed for this proxy's endpoint and its ``prx-`` resource id
   (the stack's :class:`~devtools.local.rdsauth.RdsTokenChecker`, same rules and reasons as the
   instances'); a token for the target's own endpoint is ``wrong_host`` here;
5. **leg 2**: the proxy logs in to its target over TLS (``verify-full`` against the target's
   CA) with a token it signs itself under its own role; the target's own token check decides
   (the role's ``rds-db:connect`` on the target's ``db-`` id, the user in ``rds_iam``);
6. the target's ``AuthenticationOk`` goes to the client, then bytes both ways.

A refusal names its leg in the error message the client sees (leg 1: the caller's token at
the proxy; leg 2: the proxy's login to its target) and in the log; the token never appears.
"""
from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.local.relay import relay

__all__ = ["PgProxyFront", "ProxyTarget", "LegRefusedError", "error_response"]

log = logging.getLogger(__name__)

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608
MAX_STARTUP = 10_000
MAX_PASSWORD = 64 * 1024


class LegRefusedError(Exception):
    """A login refused at the proxy: ``code`` (SQLSTATE), the client's ``message``, the log's ``reason``."""

    def __init__(self, code: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


class PeerClosedError(Exception):
    """The peer went away (or sent something no PostgreSQL client sends) during the login."""


@dataclass(frozen=True)
class ProxyTarget:
    """Where the proxy logs in: the target's endpoint and the CA its certificate chains to."""

    host: str
    port: int
    ca_path: str


def error_response(code: str, message: str) -> bytes:
    """A FATAL ErrorResponse message."""
    fields = b"".join(kind + value.encode("utf-8") + b"\0"
                      for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message)))
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def _error_fields(body: bytes) -> dict[str, str]:
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


class _Conn:
    def __init__(self, front: PgProxyFront, client: socket.socket, peer: str) -> None:
        self.front, self.client, self.peer = front, client, peer
        self.backend: socket.socket | None = None
        self.deadline = time.monotonic() + front.handshake_timeout

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(n - got)
            if not chunk:
                raise PeerClosedError("peer closed")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _message(self, sock: socket.socket, limit: int) -> tuple[bytes, bytes]:
        kind = self._recv_exact(sock, 1)
        (length,) = struct.unpack("!I", self._recv_exact(sock, 4))
        if not 4 <= length <= limit:
            raise PeerClosedError(f"message of {length} bytes")
        return kind, self._recv_exact(sock, length - 4)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        sock.settimeout(max(0.1, self.deadline - time.monotonic()))
        sock.sendall(data)

    # -- the client side -------------------------------------------------------------------
    def _startup(self) -> dict[str, str]:
        while True:
            (length,) = struct.unpack("!I", self._recv_exact(self.client, 4))
            if not 8 <= length <= MAX_STARTUP:
                raise PeerClosedError(f"startup packet of {length} bytes")
            body = self._recv_exact(self.client, length - 4)
            (code,) = struct.unpack("!I", body[:4])
            if code == GSSENC_REQUEST:
                self._send(self.client, b"N")
                continue
            if code == SSL_REQUEST and not isinstance(self.client, ssl.SSLSocket):
                self._send(self.client, b"S")
                self.client = self.front.tls.wrap_socket(self.client, server_side=True, do_handshake_on_connect=False)
                self.client.settimeout(max(0.1, self.deadline - time.monotonic()))
                try:
                    self.client.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    raise PeerClosedError(f"TLS handshake failed: {type(exc).__name__}") from None
                continue
            if code == CANCEL_REQUEST:
                raise PeerClosedError("cancel request")
            if code != PROTOCOL_3:
                raise PeerClosedError(f"protocol {code}")
            if not isinstance(self.client, ssl.SSLSocket):
                raise LegRefusedError("28000", f'RDS Proxy "{self.front.name}" requires TLS', "insecure_transport")
            parts = body[4:].split(b"\0")
            pairs = [p.decode("utf-8", "replace") for p in parts[:-2]] if len(parts) >= 2 else []
            return dict(zip(pairs[0::2], pairs[1::2], strict=False))

    def _password(self) -> str:
        self._send(self.client, b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        kind, body = self._message(self.client, MAX_PASSWORD)
        if kind != b"p":
            raise PeerClosedError("no password message")
        return body.rstrip(b"\0").decode("utf-8", "replace")

    # -- the target side (leg 2) -----------------------------------------------------------
    def _target_login(self, params: dict[str, str]) -> bytes:
        front, user = self.front, params.get("user", "")
        target = front.target
        leg2 = f'RDS Proxy "{front.name}" could not log in to its target as "{user}" (leg 2: proxy to target)'
        try:
            self.backend = socket.create_connection((target.host, target.port), timeout=front.handshake_timeout)
            self._send(self.backend, struct.pack("!II", 8, SSL_REQUEST))
            if self._recv_exact(self.backend, 1) != b"S":
                raise LegRefusedError("08001", f"{leg2}: the target does not speak TLS", "leg2:no_tls")
            self.backend = front.target_tls.wrap_socket(self.backend, server_hostname=target.host)
        except (OSError, ssl.SSLError) as exc:
            raise LegRefusedError("08001", f"{leg2}: {type(exc).__name__}", "leg2:unreachable") from None
        body = struct.pack("!I", PROTOCOL_3) + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
        self._send(self.backend, struct.pack("!I", len(body) + 4) + body)
        kind, answer = self._message(self.backend, MAX_PASSWORD)
        if kind == b"R" and answer[:4] == struct.pack("!I", 3):
            token = front.sign(target.host, target.port, user)
            self._send(self.backend, b"p" + struct.pack("!I", len(token) + 5) + token.encode() + b"\0")
            kind, answer = self._message(self.backend, MAX_PASSWORD)
        elif kind == b"R" and answer[:4] != struct.pack("!I", 0):
            raise LegRefusedError("28000", f"{leg2}: the target asked for a password, not an IAM token (is the user "
                                  "in rds_iam?)", "leg2:not_rds_iam")
        if kind == b"E":
            fields = _error_fields(answer)
            raise LegRefusedError(fields.get("C", "28000"), f"{leg2}: {fields.get('M', 'refused')}",
                                  "leg2:target_refused")
        if kind != b"R" or answer[:4] != struct.pack("!I", 0):
            raise PeerClosedError("unexpected answer from the target")
        return kind + struct.pack("!I", len(answer) + 4) + answer

    def run(self) -> None:
        user = "?"
        try:
            params = self._startup()
            user = params.get("user", "")
            token = self._password()
            problem = self.front.problem()
            if problem is not None:
                raise LegRefusedError("08001", f'RDS Proxy "{self.front.name}" has no available target ({problem})',
                                      f"proxy:{problem}")
            if not self.front.check(user, token):  # the checker logs its reason
                raise LegRefusedError("28P01", f'IAM authentication failed for user "{user}" at RDS Proxy '
                                      f'"{self.front.name}" (leg 1: caller to proxy)', "leg1:token_refused")
            ok = self._target_login(params)
            self._send(self.client, ok)
        except LegRefusedError as exc:
            log.warning("rds proxy %s: login refused: user=%r peer=%s reason=%s", self.front.name, user, self.peer,
                        exc.reason)
            try:
                self._send(self.client, error_response(exc.code, exc.message))
            except (OSError, ssl.SSLError):
                pass
            self._close()
            return
        except (PeerClosedError, TimeoutError, OSError, ssl.SSLError, struct.error) as exc:
            log.info("rds proxy %s: connection from %s dropped during login (user=%r): %s", self.front.name,
                     self.peer, user, type(exc).__name__)
            self._close()
            return
        assert self.backend is not None
        relay(self.client, self.backend, stopping=self.front.stopping, idle_timeout=self.front.idle_timeout,
              label=f"rds proxy {self.front.name}", peer=self.peer)

    def _close(self) -> None:
        for sock in (self.client, self.backend):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass


class PgProxyFront:
    """An RDS Proxy endpoint for a PostgreSQL target on ``host`` (``port``: 0 for a free one).

    ``check(user, token)``: leg 1 (the token for this proxy's endpoint and ``prx-`` id);
    ``sign(host, port, user)``: the proxy's own token for its target (leg 2);
    ``problem()``: why the proxy cannot reach its target right now, None when it can."""

    def __init__(self, *, name: str, tls_cert: str | Path, tls_key: str | Path, target: ProxyTarget,
                 check: Callable[[str, str], bool], sign: Callable[[str, int, str], str],
                 problem: Callable[[], str | None] = lambda: None, host: str = "127.0.0.1", port: int = 0,
                 handshake_timeout: float = 10.0, idle_timeout: float = 600.0, max_connections: int = 32) -> None:
        self.name = name
        self.target = target
        self.check, self.sign, self.problem = check, sign, problem
        self.handshake_timeout, self.idle_timeout = handshake_timeout, idle_timeout
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self.tls.load_cert_chain(str(tls_cert), str(tls_key))
        self.target_tls = ssl.create_default_context(cafile=target.ca_path)  # verify-full
        self._address = (host, port)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(max_connections)
        self.stopping = threading.Event()

    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError(f"rds proxy {self.name} is not started")
        return int(self._listener.getsockname()[1])

    def start(self) -> PgProxyFront:
        if self._listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(self._address)
            listener.listen(64)
            listener.settimeout(0.2)
            self._listener = listener
            self._thread = threading.Thread(target=self._serve, name=f"rdsvend-proxy-{self.name}", daemon=True)
            self._thread.start()
            log.info("rds proxy %s listening on %s:%d", self.name, self.host, self.port)
        return self

    def _serve(self) -> None:
        listener = self._listener
        while listener is not None and not self.stopping.is_set():
            try:
                client, addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                client.close()
                log.warning("rds proxy %s: connection refused: reason=too_many_connections", self.name)
                continue
            threading.Thread(target=self._handle, args=(client, addr[0]), daemon=True,
                             name=f"rdsvend-proxy-{self.name}-conn").start()

    def _handle(self, client: socket.socket, peer: str) -> None:
        try:
            _Conn(self, client, peer).run()
        except Exception:  # noqa: BLE001 - one bad connection never takes the proxy down
            log.exception("rds proxy %s: connection from %s failed", self.name, peer)
            try:
                client.close()
            except OSError:
                pass
        finally:
            self._slots.release()

    def stop(self) -> None:
        self.stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PgProxyFront:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
