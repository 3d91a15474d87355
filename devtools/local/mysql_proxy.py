"""The local stack's RDS Proxy front for the MySQL family: the MySQL front with a proxy's rules.

It is :class:`~devtools.local.mysql_front.MysqlFront` (TLS required, the token through
``mysql_clear_password``) with three differences, as RDS Proxy with ``IAMAuth: REQUIRED`` and
``DefaultAuthScheme: IAM_AUTH``:

- every user logs in with an IAM token (the proxy has no passwords of its own);
- before the token is looked at, the proxy is read live from the local RDS: gone, not
  available or its target not registered, the login is refused (``proxy.target``);
- **leg 1**: the token must be for this proxy's endpoint and ``prx-`` id (the stack's token
  checker); **leg 2**: the proxy reaches its target over TCP and TLS (verified against the
  target's CA, host name checked) and logs in with a token it signs under its own role
  (:class:`TargetLink`); the target's own checks decide (the role's ``rds-db:connect`` on the
  target's ``db-`` id, the user identified with ``AWSAuthenticationPlugin``).

Each refusal's message names its leg; the token never appears.
"""
from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from devtools.local.mysql_front import MysqlFront, PacketChannel, backend_handshake
from devtools.local.mysql_wire import (
    CLEAR,
    CLIENT_PLUGIN_AUTH_LENENC,
    CLIENT_SSL,
    IAM_PLUGIN,
    Greeting,
    Login,
    LoginRefusedError,
    PeerClosedError,
    Reader,
)
from devtools.local.pg_proxy import ProxyTarget
from devtools.local.tcp_front import FrontSettings

__all__ = ["TargetLink", "mysql_proxy_front"]


class TargetLink:
    """Leg 2: the proxy's own login to its MySQL-family target (TLS, cleartext IAM token)."""

    def __init__(self, name: str, target: ProxyTarget) -> None:
        self.name = name
        self.target = target
        self.tls = ssl.create_default_context(cafile=target.ca_path)  # host name checked: verify-full

    def connect(self, timeout: float) -> socket.socket:
        try:
            return socket.create_connection((self.target.host, self.target.port), timeout=timeout)
        except OSError as exc:
            raise LoginRefusedError(2003, "HY000", f"RDS Proxy '{self.name}' cannot reach its target "
                                    f"(leg 2: proxy to target): {type(exc).__name__}", "leg2:unreachable") from None

    def login(self, channel: PacketChannel, login: Login, password: str, greeting: Greeting) -> bytes:
        backend = channel.backend
        assert backend is not None
        if not greeting.caps & CLIENT_SSL:
            raise LoginRefusedError(2026, "HY000", f"RDS Proxy '{self.name}': the target does not speak TLS "
                                    "(leg 2: proxy to target)", "leg2:no_tls")
        handshake = backend_handshake(login, greeting, password.encode("utf-8") + b"\0", CLEAR,
                                      extra_caps=CLIENT_SSL | CLIENT_PLUGIN_AUTH_LENENC)
        channel.write_packet(backend, 1, handshake[:32])  # the SSL request: the handshake's fixed part
        try:
            channel.backend = backend = self.tls.wrap_socket(backend, server_hostname=self.target.host)
        except (ssl.SSLError, OSError) as exc:
            raise LoginRefusedError(2026, "HY000", f"RDS Proxy '{self.name}': TLS to the target failed "
                                    f"(leg 2: proxy to target): {type(exc).__name__}", "leg2:tls") from None
        channel.write_packet(backend, 2, handshake)
        _, answer = channel.read_packet(backend)
        if answer[:1] == b"\xff":
            r = Reader(answer[3:])
            if r.data[r.pos:r.pos + 1] == b"#":
                r.take(6)
            message = r.data[r.pos:].decode("utf-8", "replace")
            raise LoginRefusedError(int.from_bytes(answer[1:3], "little"), "28000",
                                    f"Access denied for user '{login.user}': RDS Proxy '{self.name}' could not log in "
                                    f"to its target (leg 2: proxy to target): {message}", "leg2:target_refused")
        if answer[:1] != b"\x00":
            raise PeerClosedError("unexpected answer from the target")
        return answer


def mysql_proxy_front(*, name: str, tls_cert: str | Path, tls_key: str | Path, target: ProxyTarget,
                      check: Callable[[str, str], bool], sign: Callable[[str, int, str], str],
                      problem: Callable[[], str | None] = lambda: None, host: str = "127.0.0.1",
                      port: int = 0, settings: FrontSettings | None = None) -> MysqlFront:
    """An RDS Proxy endpoint for a MySQL-family target (arguments as :class:`~devtools.local.pg_proxy.PgProxyFront`)."""

    def leg_one(user: str, token: str) -> bool:
        found = problem()
        if found is not None:
            raise LoginRefusedError(2013, "08S01", f"RDS Proxy '{name}' has no available target ({found})",
                                    f"proxy:{found}")
        if not check(user, token):  # the checker logs its reason
            raise LoginRefusedError(1045, "28000", f"Access denied for user '{user}': IAM authentication failed at "
                                    f"RDS Proxy '{name}' (leg 1: caller to proxy)", "leg1:token_refused")
        return True

    return MysqlFront(tls_cert=tls_cert, tls_key=tls_key, plugins=lambda _user: (IAM_PLUGIN,), check=leg_one,
                      backend_password=lambda user: sign(target.host, target.port, user), host=host, port=port,
                      link=TargetLink(name, target), label=f"rds proxy {name}", settings=settings)
