"""The direct-invoke STS exchange on the wire: one POST, bounded end to end.

:class:`DeadlineStsTransport` sends a checked identity proof (:mod:`chalicelib.vending.proof`)
to the configured STS endpoint over its own socket: TLS verified against botocore's CA
bundle (plain HTTP only where the configured endpoint says ``http://``, as the local stack's
does), no proxy, no redirect, no retry, ``Connection: close``. Every step (name lookup,
connect, TLS handshake, sending, and each read of the status line, the headers and the body)
is given only the time left until one deadline, ``total_timeout`` after the exchange began,
so an answer dripped a byte at a time cannot hold a vend past it (nor past the request's own
deadline, :mod:`chalicelib.aws.deadline`, when that is earlier); ``connect_timeout`` and
``read_timeout`` bound single steps further. The answer is capped at :data:`MAX_ANSWER_BYTES`.

Failures are :class:`UpstreamUnavailableError` naming only the kind of failure: never a
header, the signature or the session token.
"""
from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from chalicelib.aws.deadline import DeadlinePassedError, time_left
from chalicelib.errors import UpstreamUnavailableError
from chalicelib.vending.proof import MAX_ANSWER_BYTES, ProofConfig, StsAnswer, StsRequest

__all__ = ["DeadlineStsTransport"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class _DeadlinePassedError(Exception):
    """The exchange's total time is spent."""


class DeadlineStsTransport:
    """The real transport (see the module docstring)."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self._context = context

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            from botocore.httpsession import get_cert_path

            self._context = ssl.create_default_context(cafile=get_cert_path(True))
        return self._context

    def send(self, request: StsRequest, config: ProofConfig) -> StsAnswer:
        try:
            total = time_left(config.total_timeout) or config.total_timeout  # the request's deadline first
        except DeadlinePassedError:
            raise UpstreamUnavailableError("sts", detail="STS answer took too long") from None
        clock = _Deadline(time.monotonic() + total, config.read_timeout)
        parts = urlsplit(request.url)
        host = parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
        try:
            sock = _connect(host, port, clock, config.connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if parts.scheme == "https":
                    sock.settimeout(clock.left())  # a 3.11 SSL handshake keeps one deadline for its steps
                    sock = self._tls().wrap_socket(sock, server_hostname=host)
                stream = _BoundedSocket(sock, clock)
                stream.sendall(_request_bytes(parts.path or "/", request))
                response = http.client.HTTPResponse(stream, method="POST")  # type: ignore[arg-type]  # it needs makefile() only
                response.begin()
                body = response.read(MAX_ANSWER_BYTES + 1)
                if len(body) > MAX_ANSWER_BYTES:
                    raise UpstreamUnavailableError("sts", detail="STS answer is too large")
                return StsAnswer(status=response.status, body=body)
            finally:
                sock.close()
        except (_DeadlinePassedError, TimeoutError):
            raise UpstreamUnavailableError("sts", detail="STS answer took too long") from None
        except (OSError, http.client.HTTPException) as exc:
            raise UpstreamUnavailableError("sts", detail=f"STS request failed: {type(exc).__name__}") from None


def _connect(host: str, port: int, clock: _Deadline, connect_timeout: float) -> socket.socket:
    """Resolve (in a helper thread: ``getaddrinfo`` takes no timeout) and connect, both within
    the time left."""
    found: list[Any] = []
    failed: list[OSError] = []

    def resolve() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)

    resolver = threading.Thread(target=resolve, name="rdsvend-sts-resolve", daemon=True)
    resolver.start()
    resolver.join(clock.left(connect_timeout))
    if resolver.is_alive():
        raise _DeadlinePassedError
    if failed:
        raise failed[0]
    last: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in found:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(clock.left(connect_timeout))
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last


class _Deadline:
    def __init__(self, at: float, step: float) -> None:
        self.at = at
        self.step = step

    def left(self, step: float | None = None) -> float:
        """Seconds this step may take: what is left of the exchange, at most ``step``."""
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise _DeadlinePassedError
        return min(remaining, self.step if step is None else step)


class _BoundedSocket:
    """What ``http.client.HTTPResponse`` needs of a socket, each operation re-armed with the
    time left: a slow sender gains nothing by sending often."""

    def __init__(self, sock: socket.socket, clock: _Deadline) -> None:
        self._sock = sock
        self._clock = clock

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(self._clock.left())  # since 3.5: the bound of the whole sendall
        self._sock.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_BoundedReader(self._sock, self._clock), 8192)


class _BoundedReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, clock: _Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._clock.left())
        return self._sock.recv_into(buffer)


def _request_bytes(path: str, request: StsRequest) -> bytes:
    names = {name.lower() for name, _ in request.headers}
    lines = [f"POST {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers]
    if "content-length" not in names:
        lines.append(f"Content-Length: {len(request.body)}")
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + request.body
