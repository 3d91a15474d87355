"""The MySQL protocol's connection phase, as the local front needs it: capability flags, the
server greeting and the client's handshake response parsed within bounds, error packets,
``mysql_native_password``'s scramble, and the refusals a login can end with."""
from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from devtools.local.tcp_front import PeerClosedError

__all__ = [
    "CLEAR",
    "CLIENT_COMPRESS",
    "CLIENT_CONNECT_ATTRS",
    "CLIENT_CONNECT_WITH_DB",
    "CLIENT_PLUGIN_AUTH",
    "CLIENT_PLUGIN_AUTH_LENENC",
    "CLIENT_PROTOCOL_41",
    "CLIENT_SECURE_CONNECTION",
    "CLIENT_SSL",
    "PeerClosedError",
    "Greeting",
    "IAM_PLUGIN",
    "Login",
    "NATIVE",
    "Reader",
    "LoginRefusedError",
    "TOKEN_SHAPE",
    "err_packet",
    "lenenc_int",
    "native_scramble",
    "parse_greeting",
    "parse_login",
]

# capability flags
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_COMPRESS = 1 << 5
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_SSL = 1 << 11
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC = 1 << 21

CLEAR = b"mysql_clear_password"
NATIVE = b"mysql_native_password"
IAM_PLUGIN = "AWSAuthenticationPlugin"
TOKEN_SHAPE = re.compile(r"Action=connect&DBUser=.*X-Amz-Signature=", re.S)


class LoginRefusedError(Exception):
    """The login is refused: ``errno``/``sqlstate``/``message`` go to the client, ``reason`` to the log."""

    def __init__(self, errno: int, sqlstate: str, message: str, reason: str) -> None:
        super().__init__(reason)
        self.errno, self.sqlstate, self.message, self.reason = errno, sqlstate, message, reason
        #: the sequence number of the client packet refused, when the answer must follow that one
        self.seq: int | None = None


def native_scramble(password: bytes, nonce: bytes) -> bytes:
    """``mysql_native_password``: SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))."""
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(nonce + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix, strict=True))


def err_packet(errno: int, sqlstate: str, message: str) -> bytes:
    return b"\xff" + struct.pack("<H", errno) + b"#" + sqlstate.encode()[:5] + message.encode("utf-8")[:400]


def lenenc_int(value: int) -> bytes:
    if value < 251:
        return bytes([value])
    if value < 1 << 16:
        return b"\xfc" + struct.pack("<H", value)
    if value < 1 << 24:
        return b"\xfd" + struct.pack("<I", value)[:3]
    return b"\xfe" + struct.pack("<Q", value)


class Reader:
    """Bounded reads of one handshake payload."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PeerClosedError("truncated packet")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def cstring(self, optional: bool = False) -> bytes | None:
        if self.pos >= len(self.data) and optional:
            return None
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            if optional:
                out, self.pos = self.data[self.pos:], len(self.data)
                return out
            raise PeerClosedError("unterminated string")
        out = self.data[self.pos:end]
        self.pos = end + 1
        return out

    def lenenc(self) -> int:
        first = self.take(1)[0]
        if first < 251:
            return first
        size = {0xfc: 2, 0xfd: 3, 0xfe: 8}.get(first)
        if size is None:
            raise PeerClosedError("bad length-encoded integer")
        return int.from_bytes(self.take(size), "little")

    @property
    def rest(self) -> int:
        return len(self.data) - self.pos


@dataclass(frozen=True)
class Greeting:
    payload: bytes
    version: bytes
    conn_id: bytes
    caps: int
    charset: int
    status: bytes
    reserved: bytes
    nonce: bytes


def parse_greeting(payload: bytes) -> Greeting:
    r = Reader(payload)
    if r.take(1) != b"\x0a":
        raise PeerClosedError("backend greeting is not protocol 10")
    version = r.cstring() or b""
    conn_id = r.take(4)
    part1 = r.take(8)
    r.take(1)
    caps = int.from_bytes(r.take(2), "little")
    charset = r.take(1)[0]
    status = r.take(2)
    caps |= int.from_bytes(r.take(2), "little") << 16
    auth_len = r.take(1)[0]
    reserved = r.take(10)
    part2 = r.take(max(13, auth_len - 8))[:12] if caps & CLIENT_SECURE_CONNECTION else b""
    return Greeting(payload, version, conn_id, caps, charset, status, reserved, part1 + part2)


@dataclass(frozen=True)
class Login:
    caps: int
    max_packet: bytes
    charset: int
    filler: bytes
    user: str
    auth: bytes
    database: bytes | None
    plugin: bytes | None


def parse_login(payload: bytes) -> Login:
    r = Reader(payload)
    caps = int.from_bytes(r.take(4), "little")
    max_packet = r.take(4)
    charset = r.take(1)[0]
    filler = r.take(23)
    raw_user = r.cstring() or b""
    if caps & CLIENT_PLUGIN_AUTH_LENENC:
        auth = r.take(r.lenenc())
    elif caps & CLIENT_SECURE_CONNECTION:
        auth = r.take(r.take(1)[0])
    else:
        auth = r.cstring() or b""
    database = r.cstring(optional=True) if caps & CLIENT_CONNECT_WITH_DB else None
    plugin = r.cstring(optional=True) if caps & CLIENT_PLUGIN_AUTH else None
    try:
        user = raw_user.decode("utf-8")
    except UnicodeDecodeError:
        raise LoginRefusedError(1045, "28000", "Access denied (user name is not UTF-8)", "user_not_utf8") from None
    return Login(caps, max_packet, charset, filler, user, auth, database, plugin)
