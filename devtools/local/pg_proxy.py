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
A token longer than PostgreSQL reads gets an error naming the limit. Connections are bounded
as at every local front (:mod:`devtools.local.tcp_front`).
"""
from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devtools.local.pg_wire import (
    CANCEL_REQUEST,
    GSSENC_REQUEST,
    PROTOCOL_3,
    SSL_REQUEST,
    PgConnection,
    PgRefusedError,
    error_fields,
    error_response,
    message_bytes,
)
from devtools.local.tcp_front import FrontSettings, PeerClosedError, TcpFront, server_tls

__all__ = ["PgProxyFront", "ProxyTarget"]

log = logging.getLogger(__name__)

#: The bound on a message from the target during leg 2 (authentication requests, errors).
MAX_TARGET_MESSAGE = 64 * 1024


@dataclass(frozen=True)
class ProxyTarget:
    """Where the proxy logs in: the target's endpoint and the CA its certificate chains to."""

    host: str
    port: int
    ca_path: str


class _Conn(PgConnection):
    front: PgProxyFront

    # -- the client side -------------------------------------------------------------------
    def _startup(self) -> dict[str, str]:
        while True:
            body = self.startup_packet()[4:]
            (code,) = struct.unpack("!I", body[:4])
            if code == GSSENC_REQUEST:
                self.send(self.client, b"N")
                continue
            if code == SSL_REQUEST and not isinstance(self.client, ssl.SSLSocket):
                self.send(self.client, b"S")
                self.start_tls(self.front.tls)
                continue
            if code == CANCEL_REQUEST:
                raise PeerClosedError("cancel request")
            if code != PROTOCOL_3:
                raise PeerClosedError(f"protocol {code}")
            if not isinstance(self.client, ssl.SSLSocket):
                raise PgRefusedError("28000", f'RDS Proxy "{self.front.name}" requires TLS', "insecure_transport")
            parts = body[4:].split(b"\0")
            pairs = [p.decode("utf-8", "replace") for p in parts[:-2]] if len(parts) >= 2 else []
            return dict(zip(pairs[0::2], pairs[1::2], strict=False))

    def _password(self) -> str:
        self.send(self.client, b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        return self.password_message()[5:].rstrip(b"\0").decode("utf-8", "replace")

    # -- the target side (leg 2) -----------------------------------------------------------
    def _target_login(self, params: dict[str, str]) -> bytes:
        front, user = self.front, params.get("user", "")
        target = front.target
        leg2 = f'RDS Proxy "{front.name}" could not log in to its target as "{user}" (leg 2: proxy to target)'
        try:
            self.backend = socket.create_connection((target.host, target.port),
                                                    timeout=front.settings.handshake_timeout)
            self.send(self.backend, struct.pack("!II", 8, SSL_REQUEST))
            if self.recv_exact(self.backend, 1) != b"S":
                raise PgRefusedError("08001", f"{leg2}: the target does not speak TLS", "leg2:no_tls")
            self.backend = front.target_tls.wrap_socket(self.backend, server_hostname=target.host)
        except (OSError, ssl.SSLError) as exc:
            raise PgRefusedError("08001", f"{leg2}: {type(exc).__name__}", "leg2:unreachable") from None
        body = struct.pack("!I", PROTOCOL_3) + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
        self.send(self.backend, struct.pack("!I", len(body) + 4) + body)
        kind, answer = self.message(self.backend, MAX_TARGET_MESSAGE)
        if kind == b"R" and answer[:4] == struct.pack("!I", 3):
            token = front.sign(target.host, target.port, user)
            self.send(self.backend, message_bytes(b"p", token.encode() + b"\0"))
            kind, answer = self.message(self.backend, MAX_TARGET_MESSAGE)
        elif kind == b"R" and answer[:4] != struct.pack("!I", 0):
            raise PgRefusedError("28000", f"{leg2}: the target asked for a password, not an IAM token (is the user "
                                 "in rds_iam?)", "leg2:not_rds_iam")
        if kind == b"E":
            fields = error_fields(answer)
            raise PgRefusedError(fields.get("C", "28000"), f"{leg2}: {fields.get('M', 'refused')}",
                                 "leg2:target_refused")
        if kind != b"R" or answer[:4] != struct.pack("!I", 0):
            raise PeerClosedError("unexpected answer from the target")
        return message_bytes(kind, answer)

    def login(self) -> bool:
        params = self._startup()
        self.user = params.get("user", "")
        token = self._password()
        problem = self.front.problem()
        if problem is not None:
            raise PgRefusedError("08001", f'RDS Proxy "{self.front.name}" has no available target ({problem})',
                                 f"proxy:{problem}")
        if not self.front.check(self.user, token):  # the checker logs its reason
            raise PgRefusedError("28P01", f'IAM authentication failed for user "{self.user}" at RDS Proxy '
                                 f'"{self.front.name}" (leg 1: caller to proxy)', "leg1:token_refused")
        self.send(self.client, self._target_login(params))
        return True


class PgProxyFront(TcpFront):
    """An RDS Proxy endpoint for a PostgreSQL target on ``host`` (``port``: 0 for a free one).

    ``check(user, token)``: leg 1 (the token for this proxy's endpoint and ``prx-`` id);
    ``sign(host, port, user)``: the proxy's own token for its target (leg 2);
    ``problem()``: why the proxy cannot reach its target right now, None when it can."""

    def __init__(self, *, name: str, tls_cert: str | Path, tls_key: str | Path, target: ProxyTarget,
                 check: Callable[[str, str], bool], sign: Callable[[str, int, str], str],
                 problem: Callable[[], str | None] = lambda: None, host: str = "127.0.0.1", port: int = 0,
                 settings: FrontSettings | None = None) -> None:
        super().__init__(host=host, port=port, settings=settings or FrontSettings(), label=f"rds proxy {name}")
        self.name = name
        self.target = target
        self.check, self.sign, self.problem = check, sign, problem
        self.tls = server_tls(tls_cert, tls_key)
        self.target_tls = ssl.create_default_context(cafile=target.ca_path)  # verify-full

    def connection(self, client: socket.socket, peer: str) -> _Conn:
        return _Conn(self, client, peer)

    def too_many(self) -> bytes:
        return error_response("53300", "sorry, too many clients already")
