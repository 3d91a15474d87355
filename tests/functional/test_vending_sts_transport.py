"""The STS exchange's transport against loopback socket stubs: a deadline over the whole
exchange (an answer dripped a byte at a time is cut off), the answer's size bounded, errors
that name no secret, and an ordinary answer read whole."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.errors import UpstreamUnavailableError
from chalicelib.vending.proof import ProofConfig, StsAnswer, StsRequest
from chalicelib.vending.sts_transport import DeadlineStsTransport

SIGNATURE = "f" * 64
ANSWER = (b"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::111122223333:user/a</Arn>"
          b"</GetCallerIdentityResult></GetCallerIdentityResponse>")


#: what the server does once it has read the request: (the connection, the stop event)
Script = Callable[[socket.socket, threading.Event], None]


class SocketStub:
    """A loopback TCP server that reads one request and then plays ``script(conn)``."""

    def __init__(self, script: Script) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.script = script
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
            while len(body) < length:
                body += conn.recv(4096)
            self.requests.append(head + b"\r\n\r\n" + body)
            try:
                self.script(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def drip(data: bytes, every: float = 0.1) -> Script:
    def script(conn: socket.socket, stop: threading.Event) -> None:
        for byte in data:
            if stop.wait(every):
                return
            conn.sendall(bytes([byte]))
    return script


def _request(url: str) -> StsRequest:
    return StsRequest(url=url + "/", body=b"Action=GetCallerIdentity&Version=2011-06-15",
                      headers=(("host", url[len("http://"):]), ("x-amz-date", "20261122T100000Z"),
                               ("authorization", f"AWS4-HMAC-SHA256 Credential=AKIDX/20261122/us-east-1/sts/aws4_request, "
                                                 f"SignedHeaders=host;x-amz-date, Signature={SIGNATURE}")),
                      access_key_id="AKIDX", signed_at=datetime.now(UTC))


def _send(stub: SocketStub, total: float = 1.0) -> tuple[StsAnswer, float]:
    config = ProofConfig(sts_endpoint=stub.url, server_id="srv", connect_timeout=0.5, read_timeout=0.5,
                         total_timeout=total)
    started = time.monotonic()
    try:
        return DeadlineStsTransport().send(_request(stub.url), config), time.monotonic() - started
    finally:
        stub.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", [
    drip(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000),  # a byte every 0.1 s, in the body
    drip(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: y\r\n" * 500),  # ... in the headers, never ending them
])
def test_an_answer_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline(script: Script) -> None:
    stub = SocketStub(script)
    with pytest.raises(UpstreamUnavailableError) as caught:
        _send(stub, total=1.0)
    assert "took too long" in str(caught.value.detail)
    assert SIGNATURE not in str(caught.value) + str(caught.value.detail)


@pytest.mark.timeout(30)
def test_the_deadline_holds_over_the_whole_exchange_not_per_read() -> None:
    stub = SocketStub(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, every=0.05))
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError):
        _send(stub, total=1.0)
    # each byte came well within read_timeout: only the total bound can have stopped it
    assert time.monotonic() - started < 3.0  # a bound on a hang (it took 22 s), not a benchmark


def test_an_ordinary_answer_is_read_whole_and_the_request_carries_only_what_was_signed() -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))

    stub = SocketStub(answer)
    result, _ = _send(stub)
    assert (result.status, result.body) == (200, ANSWER)
    (request,) = stub.requests
    assert request.startswith(b"POST / HTTP/1.1\r\n") and request.endswith(b"Action=GetCallerIdentity&Version=2011-06-15")
    assert b"Connection: close" in request and b"Content-Length: 43" in request


def test_a_huge_answer_is_refused() -> None:
    def huge(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 200000)

    with pytest.raises(UpstreamUnavailableError) as caught:
        _send(SocketStub(huge))
    assert "too large" in caught.value.detail


def test_a_closed_port_is_upstream_unavailable() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    config = ProofConfig(sts_endpoint=url, server_id="srv", total_timeout=1.0)
    with pytest.raises(UpstreamUnavailableError) as caught:
        DeadlineStsTransport().send(_request(url), config)
    assert "STS request failed: ConnectionRefusedError" in caught.value.detail


@pytest.mark.timeout(30)
def test_a_name_lookup_that_hangs_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # A slow resolver cannot run here: getaddrinfo is replaced by one that takes 10 s.
    release = threading.Event()

    def slow_lookup(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        raise OSError("never answered")

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    config = ProofConfig(sts_endpoint="http://sts.invalid", server_id="srv", total_timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamUnavailableError) as caught:
            DeadlineStsTransport().send(_request("http://sts.invalid"), config)
    finally:
        release.set()
    assert "took too long" in caught.value.detail and time.monotonic() - started < 3.0
