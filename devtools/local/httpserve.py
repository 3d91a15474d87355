"""The local stack's HTTP front doors (the API gateway, Lambda's Invoke API): one loopback
server each, served from a daemon thread, and the request handler they share.

A subclass of :class:`LoopbackHandler` says how to answer (``answer``); reading the body
within a size bound, one write per response and the socket options live here once.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HttpAnswer", "RefusedError", "LoopbackHandler", "LoopbackServer", "LoopbackService"]

log = logging.getLogger("devtools.local.http")


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class RefusedError(Exception):
    """A request refused at one of its stages, with the answer the front door gives; raised by
    the stage, answered by the front door's request method."""

    def __init__(self, answer: HttpAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: 5 made bursts wait for SYN retries


class LoopbackServer:
    """A threading HTTP server on ``(host, port)``, served from a daemon thread."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, name: str) -> None:
        self._server = _Server(address, handler)
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def backlog(self) -> int:
        """The listen backlog (connections the kernel queues before the server accepts them)."""
        return self._server.request_queue_size

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self._server.serve_forever, name=self._name, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class LoopbackService:
    """A front door that answers through its ``_http`` server: where it listens, start, stop."""

    _http: LoopbackServer

    @property
    def url(self) -> str:
        return self._http.url

    def start(self) -> str:
        return self._http.start()

    def stop(self) -> None:
        self._http.stop()


class LoopbackHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, ``TCP_NODELAY`` and headers and body in one write.

    Subclasses set ``max_body``, ``bad_length`` / ``too_large`` (the answers for a bad or
    oversized ``Content-Length``) and implement :meth:`answer`.
    """

    protocol_version = "HTTP/1.1"
    sys_version = ""
    timeout = 30
    wbufsize = 64 * 1024  # headers and body leave in one write, when the handler flushes
    max_body = 1024 * 1024
    #: Read an oversized body up to this size before answering, so the client gets the answer, not a reset.
    drain_limit = 0

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def bad_length(self) -> HttpAnswer:
        raise NotImplementedError

    def too_large(self) -> HttpAnswer:
        raise NotImplementedError

    def answer(self, body: bytes) -> HttpAnswer:
        raise NotImplementedError

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        try:
            size = int(length) if length else 0
        except ValueError:
            self._send(self.bad_length())
            return
        if size > self.max_body or size < 0:
            self.close_connection = True
            if 0 < size <= self.drain_limit:
                while size > 0:
                    chunk = self.rfile.read(min(size, 1 << 20))
                    if not chunk:
                        break
                    size -= len(chunk)
            self._send(self.too_large())
            return
        self._send(self.answer(self.rfile.read(size) if size else b""))

    def _send(self, response: HttpAnswer) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        """Any other method (TRACE, CONNECT, made-up ones) gets the service's own answer too,
        never the standard library's 501 HTML page."""
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        log.debug("%s %s", self.server_version, format % args)
