"""PostgreSQL's wire protocol up to the end of a login, as the local fronts need it: the startup
packet and its negotiation codes, messages read within bounds, the password message with
PostgreSQL's own limit (answered with an error naming it, not a dropped connection), and FATAL
error responses."""
from __future__ import annotations

import logging
import socket
import ssl
import struct

from devtools.local.relay import relay
from devtools.local.tcp_front import FrontConnection, PeerClosedError

__all__ = ["CANCEL_REQUEST", "GSSENC_REQUEST", "MAX_PASSWORD", "MAX_STARTUP", "PROTOCOL_3", "SSL_REQUEST",
           "PgConnection", "PgRefusedError", "error_fields", "error_response", "message_bytes"]

log = logging.getLogger(__name__)

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608
#: PostgreSQL's bound on a startup packet (``MAX_STARTUP_PACKET_LENGTH``): over it, it hangs up.
MAX_STARTUP = 10_000
#: PostgreSQL's bound on a password message's body (``PG_MAX_AUTH_TOKEN_LENGTH``).
MAX_PASSWORD = 65_535


class PgRefusedError(Exception):
    """A login refused by a front: ``code`` (SQLSTATE), the client's ``message``, the log's ``reason``."""

    def __init__(self, code: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


def error_response(code: str, message: str) -> bytes:
    """A FATAL ErrorResponse message."""
    fields = b"".join(kind + value.encode("utf-8") + b"\0"
                      for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message)))
    return message_bytes(b"E", fields + b"\0")


def error_fields(body: bytes) -> dict[str, str]:
    """An ErrorResponse's fields by their one-letter codes (``M``: the message, ``C``: the SQLSTATE)."""
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def message_bytes(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


class PgConnection(FrontConnection):
    """A front's PostgreSQL connection: the login (:meth:`login`, the front's own), then the
    relay; reads bounded by the protocol's limits and the deadline. A refusal reaches the client
    as a FATAL error and the log with its reason; a client that breaks the protocol or goes
    away during the login is dropped."""

    #: the login's user, once the startup packet has named it (for the log)
    user = "?"

    def login(self) -> bool:
        """The front's login: True once the client is logged in (``self.backend`` connected),
        False when the connection ends here without a refusal (a cancel request, the server's
        own refusal already passed on)."""
        raise NotImplementedError

    def run(self) -> None:
        label = self.front.label
        try:
            if not self.login():
                self.close()
                return
        except PgRefusedError as exc:
            log.warning("%s: login refused: user=%r peer=%s reason=%s", label, self.user, self.peer, exc.reason)
            try:
                self.send(self.client, error_response(exc.code, exc.message))
            except (OSError, ssl.SSLError):
                pass
            self.close()
            return
        except (PeerClosedError, TimeoutError, OSError, ssl.SSLError, struct.error) as exc:
            log.info("%s: connection from %s dropped during login (user=%r): %s", label, self.peer, self.user,
                     exc if isinstance(exc, PeerClosedError) else type(exc).__name__)
            self.close()
            return
        self.front.logged_in(self)
        assert self.backend is not None
        relay(self.client, self.backend, stopping=self.front.stopping, idle_timeout=self.front.settings.idle_timeout,
              label=label, peer=self.peer)

    def startup_packet(self) -> bytes:
        """The client's next startup-phase packet, whole (length word included)."""
        head = self.recv_exact(self.client, 4)
        (length,) = struct.unpack("!I", head)
        if not 8 <= length <= MAX_STARTUP:
            raise PeerClosedError(f"startup packet of {length} bytes")
        return head + self.recv_exact(self.client, length - 4)

    def message(self, sock: socket.socket, limit: int) -> tuple[bytes, bytes]:
        """One message (kind, body) of at most ``limit`` bytes from ``sock``."""
        kind = self.recv_exact(sock, 1)
        (length,) = struct.unpack("!I", self.recv_exact(sock, 4))
        if not 4 <= length <= limit:
            raise PeerClosedError(f"message of {length} bytes")
        return kind, self.recv_exact(sock, length - 4)

    def password_message(self) -> bytes:
        """The client's answer to an authentication request (a ``p`` message), whole. One longer
        than PostgreSQL reads is read to its end and refused with an error naming the limit."""
        kind = self.recv_exact(self.client, 1)
        head = self.recv_exact(self.client, 4)
        (length,) = struct.unpack("!I", head)
        if kind != b"p" or length < 4:
            raise PeerClosedError("no password message")
        if length - 4 > MAX_PASSWORD:
            self.drain(self.client, length - 4)
            raise PgRefusedError("08P01", f"password message of {length - 4} bytes is too long: PostgreSQL reads at "
                                 f"most {MAX_PASSWORD} bytes (an IAM token is a few kilobytes)", "password_too_long")
        return kind + head + self.recv_exact(self.client, length - 4)
