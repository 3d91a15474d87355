"""Bytes both ways between a client and its backend, after a front has done the login.

The local stack's fronts (the MySQL endpoint, the RDS Proxy fronts) log a client in themselves
and then only relay: :func:`relay` copies until either side closes, the front stops, or the
connection has been idle for ``idle_timeout`` seconds; it closes both sockets when done.
"""
from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time

__all__ = ["relay"]

log = logging.getLogger(__name__)


def relay(client: socket.socket, backend: socket.socket, *, stopping: threading.Event, idle_timeout: float,
          label: str = "front", peer: str = "?") -> None:
    """Copy bytes between ``client`` and ``backend`` until one closes (TLS-aware: data already
    decrypted and pending in an SSL socket is read before waiting on the network)."""
    last = time.monotonic()
    try:
        client.settimeout(30.0)
        backend.settimeout(30.0)
        while not stopping.is_set():
            ready = [s for s in (client, backend) if isinstance(s, ssl.SSLSocket) and s.pending() > 0]
            readable = ready or select.select([client, backend], [], [], min(idle_timeout, 1.0))[0]
            if not readable:
                if time.monotonic() - last > idle_timeout:
                    log.info("%s: idle connection from %s closed", label, peer)
                    return
                continue
            last = time.monotonic()
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (backend if sock is client else client).sendall(data)
    except (OSError, ssl.SSLError):
        return
    finally:
        for sock in (client, backend):
            try:
                sock.close()
            except OSError:
                pass
