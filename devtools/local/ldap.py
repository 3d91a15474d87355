"""A bind-only LDAP responder: how the local PostgreSQL hands a login's password to rdsvend.

PostgreSQL's ``ldap`` method in simple bind mode sends an LDAPv3 simple BindRequest with the
DN ``ldapprefix + user + ldapsuffix`` and the password the client gave (an RDS IAM token
here). This server answers it with ``success`` or ``invalidCredentials`` as an injected
``check(user, password)`` decides, answers ``UnbindRequest`` by closing, and refuses any
other operation with a notice of disconnection. Messages are framed by hand (definite
lengths only, at most ``max_message`` bytes) and decoded with pyasn1's BER decoder against
the few RFC 4511 types it needs. The password is never logged.

Idle connections cannot starve logins: a connection that sends nothing for ``idle_timeout``
(1 s: PostgreSQL sends its bind at once) is closed, a message must arrive whole within
``timeout`` of its first byte, each connection has its own thread, and the limit that
matters, ``max_checks`` credential checks at a time, is taken only once a bind has arrived.
The connection cap (``max_connections``) is far above what idle clients can hold for a
second.
"""
from __future__ import annotations

import logging
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ

__all__ = ["LdapResponder", "BindCheck", "parse_bind_dn", "SUCCESS", "INVALID_CREDENTIALS"]

log = logging.getLogger(__name__)

BindCheck = Callable[[str, str], bool]

SUCCESS = 0
PROTOCOL_ERROR = 2
AUTH_METHOD_NOT_SUPPORTED = 7
UNAVAILABLE_CRITICAL_EXTENSION = 12
INVALID_CREDENTIALS = 49
BUSY = 51
OTHER = 80
NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"


def _app(number: int, constructed: bool = True) -> tag.Tag:
    fmt = tag.tagFormatConstructed if constructed else tag.tagFormatSimple
    return tag.Tag(tag.tagClassApplication, fmt, number)


def _ctx(number: int, constructed: bool = False) -> tag.Tag:
    fmt = tag.tagFormatConstructed if constructed else tag.tagFormatSimple
    return tag.Tag(tag.tagClassContext, fmt, number)


class _SaslCredentials(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("mechanism", univ.OctetString()),
        namedtype.OptionalNamedType("credentials", univ.OctetString()),
    )


class _Authentication(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("simple", univ.OctetString().subtype(implicitTag=_ctx(0))),
        namedtype.NamedType("sasl", _SaslCredentials().subtype(implicitTag=_ctx(3, constructed=True))),
    )


class _BindRequest(univ.Sequence):
    tagSet = univ.Sequence.tagSet.tagImplicitly(_app(0))
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("name", univ.OctetString()),
        namedtype.NamedType("authentication", _Authentication()),
    )


class _BindResponse(univ.Sequence):
    tagSet = univ.Sequence.tagSet.tagImplicitly(_app(1))
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("resultCode", univ.Enumerated()),
        namedtype.NamedType("matchedDN", univ.OctetString()),
        namedtype.NamedType("diagnosticMessage", univ.OctetString()),
    )


class _UnbindRequest(univ.Null):
    tagSet = univ.Null.tagSet.tagImplicitly(_app(2, constructed=False))


class _ExtendedResponse(univ.Sequence):
    tagSet = univ.Sequence.tagSet.tagImplicitly(_app(24))
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("resultCode", univ.Enumerated()),
        namedtype.NamedType("matchedDN", univ.OctetString()),
        namedtype.NamedType("diagnosticMessage", univ.OctetString()),
        namedtype.OptionalNamedType("responseName", univ.OctetString().subtype(implicitTag=_ctx(10))),
    )


class _ProtocolOp(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("bindRequest", _BindRequest()),
        namedtype.NamedType("bindResponse", _BindResponse()),
        namedtype.NamedType("unbindRequest", _UnbindRequest()),
        namedtype.NamedType("extendedResp", _ExtendedResponse()),
    )


class _Control(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("controlType", univ.OctetString()),
        namedtype.DefaultedNamedType("criticality", univ.Boolean(False)),
        namedtype.OptionalNamedType("controlValue", univ.OctetString()),
    )


class _Controls(univ.SequenceOf):
    componentType = _Control()
    tagSet = univ.SequenceOf.tagSet.tagImplicitly(_ctx(0, constructed=True))


class _LdapMessage(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("messageID", univ.Integer()),
        namedtype.NamedType("protocolOp", _ProtocolOp()),
        namedtype.OptionalNamedType("controls", _Controls()),
    )


class _Refuse(Exception):
    """The peer sent something this responder does not take; disconnect."""


def parse_bind_dn(dn: str, prefix: str, suffix: str) -> str | None:
    """The user in ``prefix + user + suffix`` (how PostgreSQL builds it), or ``None``."""
    if len(dn) <= len(prefix) + len(suffix) or not dn.startswith(prefix) or not dn.endswith(suffix):
        return None
    return dn[len(prefix): len(dn) - len(suffix)]


def _response(message_id: int, code: int, diagnostic: str = "") -> bytes:
    message = _LdapMessage()
    message["messageID"] = message_id
    op = message["protocolOp"]
    body = op["bindResponse"]
    body["resultCode"] = code
    body["matchedDN"] = b""
    body["diagnosticMessage"] = diagnostic.encode()
    return bytes(encoder.encode(message))


def _disconnect_notice(code: int, diagnostic: str) -> bytes:
    message = _LdapMessage()
    message["messageID"] = 0
    body = message["protocolOp"]["extendedResp"]
    body["resultCode"] = code
    body["matchedDN"] = b""
    body["diagnosticMessage"] = diagnostic.encode()
    body["responseName"] = NOTICE_OF_DISCONNECTION.encode()
    return bytes(encoder.encode(message))


@dataclass(frozen=True)
class _Settings:
    check: BindCheck
    prefix: str
    suffix: str
    max_message: int
    timeout: float
    idle_timeout: float


class _Handler(socketserver.BaseRequestHandler):
    server: _Server
    _deadline: float = 0.0

    def handle(self) -> None:
        settings = self.server.settings
        if not self.server.connections.acquire(blocking=False):
            self._send(_disconnect_notice(BUSY, "too many connections"))
            return
        try:
            while True:
                raw = self._read_message(settings.max_message)
                if raw is None:
                    return
                if not self._answer(raw, settings):
                    return
        except _Refuse as exc:
            log.warning("ldap responder: refused a message from %s: %s", self.client_address[0], exc)
            self._send(_disconnect_notice(PROTOCOL_ERROR, str(exc)))
        except TimeoutError:
            log.info("ldap responder: connection from %s timed out", self.client_address[0])
        except OSError:
            return
        finally:
            self.server.connections.release()

    def _send(self, data: bytes) -> None:
        try:
            self.request.sendall(data)
        except OSError:
            pass

    def _recv_exact(self, count: int) -> bytes | None:
        chunks, got = [], 0
        while got < count:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.request.settimeout(remaining)
            chunk = self.request.recv(min(count - got, 65536))
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read_message(self, limit: int) -> bytes | None:
        settings = self.server.settings
        self._deadline = time.monotonic() + settings.idle_timeout  # for the first byte
        first_byte = self._recv_exact(1)
        if first_byte is None:
            return None
        self._deadline = time.monotonic() + settings.timeout  # for the rest of the message
        rest = self._recv_exact(1)
        if rest is None:
            return None
        head = first_byte + rest
        if head[0] != 0x30:
            raise _Refuse("not an LDAPMessage")
        first = head[1]
        if first < 0x80:
            length, length_bytes = first, b""
        else:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise _Refuse("indefinite or oversized length")
            more = self._recv_exact(count)
            if more is None:
                return None
            length_bytes = more
            length = int.from_bytes(length_bytes, "big")
        if length > limit:
            raise _Refuse(f"message of {length} bytes is over the {limit} byte limit")
        body = self._recv_exact(length)
        if body is None:
            return None
        return head + length_bytes + body

    def _answer(self, raw: bytes, settings: _Settings) -> bool:
        """Answer one message; ``False`` closes the connection."""
        try:
            message, rest = decoder.decode(raw, asn1Spec=_LdapMessage())
        except (PyAsn1Error, ValueError, TypeError) as exc:
            raise _Refuse("unsupported or malformed operation") from exc
        if rest:
            raise _Refuse("trailing bytes after the message")
        message_id = int(message["messageID"])
        op = message["protocolOp"]
        name = op.getName()
        if name == "unbindRequest":
            return False
        if name != "bindRequest":
            raise _Refuse(f"operation '{name}' is not supported")
        controls = message["controls"] if message["controls"].isValue else []
        if any(bool(control["criticality"]) for control in controls):
            self._send(_response(message_id, UNAVAILABLE_CRITICAL_EXTENSION, "critical controls not supported"))
            return True
        self._send(self._bind(message_id, op["bindRequest"], settings))
        return True

    def _bind(self, message_id: int, request: _BindRequest, settings: _Settings) -> bytes:
        peer = self.client_address[0]
        if int(request["version"]) != 3:
            return _response(message_id, PROTOCOL_ERROR, "only LDAPv3")
        auth = request["authentication"]
        if auth.getName() != "simple":
            return _response(message_id, AUTH_METHOD_NOT_SUPPORTED, "only simple bind")
        login = _simple_login(request, settings, peer)
        if login is None:
            return _response(message_id, INVALID_CREDENTIALS)
        user, password = login
        try:
            with self.server.checks:  # the bounded resource: checks, not idle connections
                allowed = settings.check(user, password)
        except Exception as exc:  # noqa: BLE001 - any failure to check is a refusal
            log.error("ldap responder: could not check the login of %r: %s", user, type(exc).__name__)
            return _response(message_id, OTHER, "could not check the credentials")
        return _response(message_id, SUCCESS if allowed is True else INVALID_CREDENTIALS)


def _simple_login(request: _BindRequest, settings: _Settings, peer: str) -> tuple[str, str] | None:
    """The user (read from the DN) and password of a simple bind; None (logged) when the DN is
    not ``prefix<user>suffix``, the password is empty, or either is not UTF-8."""
    try:
        dn = bytes(request["name"]).decode("utf-8")
        password = bytes(request["authentication"]["simple"]).decode("utf-8")
    except UnicodeDecodeError:
        log.warning("ldap responder: bind from %s refused: name or password is not UTF-8", peer)
        return None
    user = parse_bind_dn(dn, settings.prefix, settings.suffix)
    if user is None:
        log.warning("ldap responder: bind from %s refused: DN %r is not %s<user>%s",
                    peer, dn[:200], settings.prefix, settings.suffix)
        return None
    if not password:
        log.warning("ldap responder: bind for %r refused: empty password", user)
        return None
    return user, password


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = False
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], settings: _Settings, max_connections: int, max_checks: int) -> None:
        self.settings = settings
        self.connections = threading.BoundedSemaphore(max_connections)
        self.checks = threading.BoundedSemaphore(max_checks)
        super().__init__(address, _Handler)


class LdapResponder:
    """A bind-only LDAP server on ``127.0.0.1`` (a free port unless one is given).

    Use as a context manager, or ``start()`` / ``stop()``. ``port`` is known once started.
    """

    def __init__(
        self,
        check: BindCheck,
        *,
        prefix: str = "cn=",
        suffix: str = ",dc=rdsvend",
        host: str = "127.0.0.1",
        port: int = 0,
        max_message: int = 16 * 1024,
        timeout: float = 5.0,
        idle_timeout: float = 1.0,
        max_connections: int = 1024,
        max_checks: int = 32,
    ) -> None:
        self._settings = _Settings(check, prefix, suffix, max_message, timeout, idle_timeout)
        self._address = (host, port)
        self._max_connections = max_connections
        self._max_checks = max_checks
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the LDAP responder is not started")
        return self._server.server_address[1]

    def start(self) -> LdapResponder:
        if self._server is not None:
            return self
        self._server = _Server(self._address, self._settings, self._max_connections, self._max_checks)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="rdsvend-ldap", daemon=True
        )
        self._thread.start()
        log.info("ldap responder listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LdapResponder:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
