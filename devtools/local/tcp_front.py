"""The local stack's database fronts (the MariaDB and PostgreSQL endpoints, the RDS Proxy fronts):
one listener, one rule for who holds a connection slot, one login deadline.

A front listens on a loopback port, gives each connection its own thread and a deadline for its
login (``handshake_timeout``), and after the login only relays bytes
(:func:`~devtools.local.relay.relay`). A subclass says how a connection logs in
(:meth:`TcpFront.connection`) and how its protocol says "too many connections"
(:meth:`TcpFront.too_many`).

Slots (:class:`Admission`): at most ``max_connections`` connections at once, logged in or still
logging in. Connections still in their login never lock logins out, and one address cannot
crowd out another's:

- a *peer* is a source address (``127.0.0.1``; a client that binds ``127.0.0.2`` is another
  peer). At most ``max_logins_per_peer`` connections of one peer are in their login at once:
  a newcomer over that takes the slot of its own peer's connection that has waited longest;
- when every slot is taken, a newcomer takes the slot of the longest-waiting connection of the
  peer with the most connections in their login (so a peer's logins are cut for another's
  newcomer only while it holds at least as many logins as any other peer);
- only when every slot holds a logged-in session is a newcomer refused, with its protocol's
  "too many connections" answer.

A login that has not finished within ``handshake_timeout`` is closed; a logged-in session idle
for ``idle_timeout`` is closed (``math.inf``: never).
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Protocol, Self

__all__ = ["Admission", "Admitted", "DRAIN_LIMIT", "FrontConnection", "FrontSettings", "PeerClosedError",
           "TcpFront", "server_tls", "tls_like"]

log = logging.getLogger(__name__)

#: A login message over its front's limit but at most this large is read to its end before the
#: refusal, so the client reads the error instead of a reset connection.
DRAIN_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class FrontSettings:
    """A front's bounds: see the module's docstring."""

    handshake_timeout: float = 10.0
    idle_timeout: float = 600.0
    #: the MySQL fronts' bound on a login packet (the PostgreSQL fronts use PostgreSQL's own)
    max_handshake_packet: int = 64 * 1024
    max_connections: int = 32
    #: connections of one source address in their login at once (at most ``max_connections``)
    max_logins_per_peer: int = 16

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_logins_per_peer < 1:
            raise ValueError("max_connections and max_logins_per_peer must be at least 1")
        if not (self.handshake_timeout > 0 and self.idle_timeout > 0):  # NaN is neither
            raise ValueError("handshake_timeout and idle_timeout must be positive")


class PeerClosedError(Exception):
    """The peer went away (or sent something no client of the protocol sends) during the login."""


class Admitted(Protocol):
    """A connection as :class:`Admission` sees it: where it comes from, and how to cut it off."""

    @property
    def peer(self) -> str: ...

    def abort(self) -> None: ...


class Admission:
    """Who holds a connection slot (the rules are in the module's docstring). Thread-safe."""

    def __init__(self, max_connections: int, max_logins_per_peer: int, *, label: str = "front") -> None:
        self.max_connections = max_connections
        self.max_logins_per_peer = min(max_logins_per_peer, max_connections)
        self.label = label
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._open: set[int] = set()
        self._logging_in: dict[str, dict[int, tuple[int, Admitted]]] = {}  # per peer, oldest first

    def admit(self, conn: Admitted) -> bool:
        """Give ``conn`` a slot (cutting off a waiting login if the rules say so), or refuse it."""
        with self._lock:
            mine = self._logging_in.get(conn.peer, {})
            victim: Admitted | None = None
            if len(mine) >= self.max_logins_per_peer:
                victim, why = next(iter(mine.values()))[1], f"{conn.peer} has {len(mine)} connections in their login"
            elif len(self._open) >= self.max_connections:
                victim, why = self._busiest_waiting(), "every slot was taken"
                if victim is None:
                    return False
            if victim is not None:
                self._forget(victim)
            self._open.add(id(conn))
            self._logging_in.setdefault(conn.peer, {})[id(conn)] = (next(self._order), conn)
        if victim is not None:
            log.warning("%s: connection from %s cut off in its login: %s", self.label, victim.peer, why)
            victim.abort()
        return True

    def _busiest_waiting(self) -> Admitted | None:
        """The longest-waiting login of the peer with the most logins waiting (a tie: the one
        waiting longest); None when every connection is logged in."""
        best: tuple[int, int, Admitted] | None = None
        for waiting in self._logging_in.values():
            order, conn = next(iter(waiting.values()))
            if best is None or (len(waiting), -order) > (best[0], -best[1]):
                best = (len(waiting), order, conn)
        return None if best is None else best[2]

    def logged_in(self, conn: Admitted) -> None:
        """``conn`` finished its login: its slot is no longer one a newcomer may take."""
        with self._lock:
            self._drop_waiting(conn)

    def release(self, conn: Admitted) -> None:
        """``conn`` ended (a connection already cut off has given its slot away: nothing to do)."""
        with self._lock:
            self._forget(conn)

    def _forget(self, conn: Admitted) -> None:
        self._open.discard(id(conn))
        self._drop_waiting(conn)

    def _drop_waiting(self, conn: Admitted) -> None:
        waiting = self._logging_in.get(conn.peer)
        if waiting is not None and waiting.pop(id(conn), None) is not None and not waiting:
            del self._logging_in[conn.peer]

    def counts(self) -> tuple[int, dict[str, int]]:
        """Connections holding a slot, and per peer how many of them are in their login."""
        with self._lock:
            return len(self._open), {peer: len(waiting) for peer, waiting in self._logging_in.items()}


def tls_like(client: ssl.SSLSocket, cafile: str) -> ssl.SSLContext:
    """A client context for the front's own TLS to its backend at the client's TLS version (and,
    under TLS 1.2, cipher): the backend's view of the session (``Ssl_version``, ``pg_stat_ssl``)
    then names the client's TLS, as on RDS, where the client's TLS ends in the server."""
    context = ssl.create_default_context(cafile=cafile)
    version = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}.get(client.version() or "")
    if version is not None:
        context.minimum_version = context.maximum_version = version
    cipher = client.cipher()
    if cipher is not None and version is not None and version < ssl.TLSVersion.TLSv1_3:
        context.set_ciphers(cipher[0])
    return context


def server_tls(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """A front's own TLS, as a server: TLS 1.2 or later with ``cert`` and ``key``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


class FrontConnection:
    """One client connection through ``front``: its sockets, its peer and its login's deadline."""

    def __init__(self, front: TcpFront, client: socket.socket, peer: str) -> None:
        self.front = front
        self.client, self._peer = client, peer
        self.backend: socket.socket | None = None
        self.deadline = time.monotonic() + front.settings.handshake_timeout

    @property
    def peer(self) -> str:
        return self._peer

    def run(self) -> None:
        """The login, then the relay; closes both sockets when done."""
        raise NotImplementedError

    def recv_exact(self, sock: socket.socket, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(min(n - got, 1 << 20))
            if not chunk:
                raise PeerClosedError("peer closed")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def send(self, sock: socket.socket, data: bytes) -> None:
        sock.settimeout(max(0.1, self.deadline - time.monotonic()))
        sock.sendall(data)

    def start_tls(self, context: ssl.SSLContext) -> ssl.SSLSocket:
        """TLS with the client, the front as the server, within the login's deadline."""
        client = context.wrap_socket(self.client, server_side=True, do_handshake_on_connect=False)
        self.client = client
        client.settimeout(max(0.1, self.deadline - time.monotonic()))
        try:
            client.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            raise PeerClosedError(f"TLS handshake failed: {type(exc).__name__}") from None
        return client

    def drain(self, sock: socket.socket, length: int) -> None:
        """Read and drop an oversized message (up to :data:`DRAIN_LIMIT`) within the deadline,
        so that the refusal sent next is read, not lost in a reset."""
        if length > DRAIN_LIMIT:
            return
        try:
            while length > 0:
                length -= len(self.recv_exact(sock, min(length, 65536)))
        except (TimeoutError, OSError, PeerClosedError):
            pass

    def abort(self) -> None:
        """Cut this connection off (it is still logging in and its slot is wanted): its thread,
        waiting on either socket, wakes and ends."""
        for sock in (self.client, self.backend):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Close both sockets; a client in TLS gets TLS's goodbye (close_notify) first, as servers
        send it: after a refusal or a cancel request it reads a clean end, not a truncated stream."""
        if isinstance(self.client, ssl.SSLSocket):
            try:
                self.client.settimeout(0.5)
                self.client.unwrap()
            except (OSError, ValueError):
                pass
        for sock in (self.client, self.backend):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass


class TcpFront:
    """A front on ``host`` (``port``: 0 for a free one): the listener, the slots, the threads."""

    def __init__(self, *, host: str, port: int, settings: FrontSettings, label: str) -> None:
        self.settings, self.label = settings, label
        self.admission = Admission(settings.max_connections, settings.max_logins_per_peer, label=label)
        self.stopping = threading.Event()
        self._address = (host, port)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # --- what a protocol provides ---------------------------------------------------------
    def connection(self, client: socket.socket, peer: str) -> FrontConnection:
        """The protocol's handler for a new client connection (not yet running)."""
        raise NotImplementedError

    def too_many(self) -> bytes:
        """The protocol's first and last words to a client refused because every slot holds a session."""
        raise NotImplementedError

    # --- where it listens -----------------------------------------------------------------
    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError(f"{self.label} is not started")
        return int(self._listener.getsockname()[1])

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port of a previous run (TIME_WAIT)
            listener.bind(self._address)
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.2)
        self._listener = listener
        self.stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"rdsvend-{self.label}", daemon=True)
        self._thread.start()
        log.info("%s listening on %s:%d", self.label, self.host, self.port)
        return self

    def stop(self) -> None:
        self.stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- connections ----------------------------------------------------------------------
    def _serve(self) -> None:
        listener = self._listener
        while listener is not None and not self.stopping.is_set():
            try:
                client, addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = self.connection(client, str(addr[0]))
            if not self.admission.admit(conn):
                self._refuse(client)
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True, name=f"rdsvend-{self.label}-conn").start()

    def _refuse(self, client: socket.socket) -> None:
        try:
            client.settimeout(1.0)
            client.sendall(self.too_many())
        except OSError:
            pass
        finally:
            client.close()
        log.warning("%s: connection refused: reason=too_many_connections", self.label)

    def _handle(self, conn: FrontConnection) -> None:
        try:
            conn.run()
        except Exception:  # noqa: BLE001 - one bad connection never takes the front down
            log.exception("%s: connection from %s failed", self.label, conn.peer)
            conn.close()
        finally:
            self.admission.release(conn)

    def logged_in(self, conn: FrontConnection) -> None:
        """``conn`` finished its login: from now on it is a session, not a waiting login."""
        self.admission.logged_in(conn)
