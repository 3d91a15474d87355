"""One deadline per request for every AWS call made while answering it.

botocore's ``connect_timeout`` and ``read_timeout`` bound single socket operations: an
upstream that sends a byte every few seconds re-arms the read timeout with each byte and holds
a call for as long as it drips. A request opened with :func:`upstream_deadline` carries one
point in time (a context variable, so threads and other requests are not affected); clients
passed through :func:`bound_by_deadline` then

- connect, send and read each step with at most the time left (their sockets re-arm every
  read with ``min(read_timeout, time left)``), so a dripping answer is cut off at the deadline;
- send no attempt once the deadline has passed (``before-send``);
- retry only when the longest back-off botocore may sleep still leaves time for an attempt
  (``needs-retry``).

Past the deadline a call fails with :class:`DeadlinePassedError` (a ``TimeoutError``; inside
botocore's stack it surfaces as botocore's ``ReadTimeoutError``/``ConnectTimeoutError``):
callers turn that into a 503 with ``Retry-After``. Without an open deadline the clients behave
exactly as configured. This module imports nothing from the rest of rdsvend.
"""
from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "DeadlinePassedError",
    "upstream_deadline",
    "time_left",
    "deadline_passed",
    "check_deadline",
    "bound_by_deadline",
    "MIN_ATTEMPT_SECONDS",
]

#: A retry is not started with less than this left after its back-off.
MIN_ATTEMPT_SECONDS = 0.25

_DEADLINE: ContextVar[float | None] = ContextVar("rdsvend_upstream_deadline", default=None)


class DeadlinePassedError(TimeoutError):
    """The request's time for upstream calls is spent."""

    def __init__(self, message: str = "the request's deadline for upstream calls has passed") -> None:
        super().__init__(message)


@contextmanager
def upstream_deadline(seconds: float) -> Iterator[float]:
    """Every upstream call inside the block ends within ``seconds`` from now (an enclosing,
    earlier deadline stays in force). Yields the deadline (``time.monotonic()`` based)."""
    at = time.monotonic() + seconds
    outer = _DEADLINE.get()
    if outer is not None:
        at = min(at, outer)
    token = _DEADLINE.set(at)
    try:
        yield at
    finally:
        _DEADLINE.reset(token)


def time_left(step: float | None = None) -> float | None:
    """Seconds the next step may take: the time left, at most ``step``; ``step`` when no
    deadline is open. Raises :class:`DeadlinePassedError` when the deadline has passed."""
    at = _DEADLINE.get()
    if at is None:
        return step
    remaining = at - time.monotonic()
    if remaining <= 0:
        raise DeadlinePassedError
    return remaining if step is None else min(step, remaining)


def deadline_passed() -> bool:
    """True inside a request whose deadline has passed."""
    at = _DEADLINE.get()
    return at is not None and time.monotonic() >= at


def check_deadline() -> None:
    """Raise :class:`DeadlinePassedError` when the open deadline has passed."""
    time_left()


# -- sockets that re-arm every operation with the time left ---------------------------------
class _DeadlineReader(io.RawIOBase):
    """The socket's own unbuffered reading file (``makefile("rb", buffering=0)``), each read
    re-armed with the time left. Going through the socket's file matters: it holds a reference
    on the socket, and http.client closes its connection as soon as an answer says
    ``Connection: close`` and reads the body afterwards, so the descriptor must stay open until
    this file is closed too."""

    def __init__(self, sock: Any, owner: DeadlineSocket) -> None:
        super().__init__()
        self._sock = sock
        self._file = sock.makefile("rb", buffering=0)
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(time_left(self._owner.step))
        count: int | None = self._file.readinto(buffer)
        return count

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class DeadlineSocket:
    """A connected (TLS) socket whose sends and reads each get at most the time left.

    ``settimeout`` records the per-operation bound (botocore's connect/read timeout); every
    other attribute is the wrapped socket's."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.step: float | None = sock.gettimeout()

    def settimeout(self, value: float | None) -> None:
        self.step = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self.step

    def sendall(self, data: Any, *args: Any) -> None:
        self._sock.settimeout(time_left(self.step))  # since 3.5 the bound of the whole sendall
        self._sock.sendall(data, *args)

    def send(self, data: Any, *args: Any) -> int:
        self._sock.settimeout(time_left(self.step))
        sent: int = self._sock.send(data, *args)
        return sent

    def recv(self, size: int, *args: Any) -> bytes:
        self._sock.settimeout(time_left(self.step))
        data: bytes = self._sock.recv(size, *args)
        return data

    def recv_into(self, buffer: Any, *args: Any) -> int:
        self._sock.settimeout(time_left(self.step))
        count: int = self._sock.recv_into(buffer, *args)
        return count

    def makefile(self, mode: str = "rb", buffering: int | None = None, **_: Any) -> io.RawIOBase | io.BufferedReader:
        if "r" not in mode or "w" in mode:
            raise ValueError(f"a deadline socket reads only, not mode {mode!r}")
        raw = _DeadlineReader(self._sock, self)
        if buffering == 0:  # botocore's Expect: 100-continue reads its answer unbuffered
            return raw
        return io.BufferedReader(raw, buffering or io.DEFAULT_BUFFER_SIZE)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _connection_classes() -> tuple[type[Any], type[Any]]:
    from botocore.awsrequest import AWSHTTPConnection, AWSHTTPSConnection

    class DeadlineHTTPConnection(AWSHTTPConnection):
        def connect(self) -> None:
            self.timeout = time_left(self.timeout)
            super().connect()
            self.sock = DeadlineSocket(self.sock)

    class DeadlineHTTPSConnection(AWSHTTPSConnection):
        def connect(self) -> None:
            self.timeout = time_left(self.timeout)
            super().connect()
            self.sock = DeadlineSocket(self.sock)

    return DeadlineHTTPConnection, DeadlineHTTPSConnection


_POOLS: dict[str, type[Any]] = {}


def _pool_classes() -> dict[str, type[Any]]:
    if not _POOLS:
        from botocore.awsrequest import AWSHTTPConnectionPool, AWSHTTPSConnectionPool

        plain, tls = _connection_classes()
        _POOLS["http"] = type("DeadlineHTTPConnectionPool", (AWSHTTPConnectionPool,), {"ConnectionCls": plain})
        _POOLS["https"] = type("DeadlineHTTPSConnectionPool", (AWSHTTPSConnectionPool,), {"ConnectionCls": tls})
    return _POOLS


def _refuse_when_passed(**_: Any) -> None:
    """``before-send``: no attempt starts once the deadline has passed."""
    check_deadline()


def _retry_only_with_time_left(attempts: int = 1, **_: Any) -> bool | None:
    """``needs-retry`` (registered first): ``False`` (no retry) when botocore's longest
    back-off for this attempt (``2 ** (attempts - 1)`` s, standard mode) and one more short
    attempt would not fit in the time left; otherwise ``None``, leaving the decision to
    botocore's own retry handler."""
    at = _DEADLINE.get()
    if at is None:
        return None
    longest_sleep = min(2.0 ** max(attempts - 1, 0), 20.0)
    if at - time.monotonic() < longest_sleep + MIN_ATTEMPT_SECONDS:
        return False
    return None


def bound_by_deadline(client: Any) -> Any:
    """Make ``client`` (a boto3 client) keep the open request deadline; returns it.

    The client's HTTP session builds its connections from deadline-aware pool classes
    (botocore offers no public switch for them: its session is reached through the client's
    endpoint, and a botocore that no longer has one fails here, at client creation, loudly)."""
    session = client._endpoint.http_session  # see the docstring
    classes = _pool_classes()
    session._pool_classes_by_scheme = classes  # botocore has no public switch (docstring)
    session._manager.pool_classes_by_scheme = classes  # botocore has no public switch (docstring)
    for manager in session._proxy_managers.values():  # botocore has no public switch (docstring)
        manager.pool_classes_by_scheme = classes
    client.meta.events.register("before-send", _refuse_when_passed, unique_id="rdsvend-deadline-send")
    # botocore runs the handlers of the more specific name first: register on the service's own
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"needs-retry.{service}", _retry_only_with_time_left,
                                      unique_id=f"rdsvend-deadline-retry-{service}")
    return client

