"""TokenClient against a real HTTP server on loopback: caching, refresh, one flight, backoff."""
from __future__ import annotations

import functools
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from chalicelib.clock import FrozenClock
from rdsvend import TokenClient, VendApi, VendError
from tests.support.client_fakes import ACCESS_KEY, SECRET_KEY, FakeVendServer, Reply, Seen, error_reply, token_body


@pytest.fixture
def server() -> Iterator[FakeVendServer]:
    fake = FakeVendServer()
    yield fake
    fake.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 22, 10, 0, tzinfo=UTC))


def _session() -> boto3.Session:
    return boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                         region_name="us-east-1")


def _client(server: FakeVendServer, clock: FrozenClock, **kwargs: Any) -> TokenClient:
    api = VendApi(server.url, session=_session(), clock=clock, timeout=5)
    return TokenClient(api=api, clock=clock, rng=random.Random(7), **kwargs)


def _with_dbname(dbname: object, number: int, seen: Seen) -> Reply:
    """An answer whose dbname is ``dbname``."""
    return 200, {}, {**token_body(f"tok-{number}"), "dbname": dbname}


def test_requests_are_sigv4_signed_for_execute_api(server: FakeVendServer, clock: FrozenClock) -> None:
    client = _client(server, clock)
    assert client.token("orders-prod", "orders_app") == "tok-1"
    (seen,) = server.posts
    assert seen.path == "/v1/tokens"
    assert seen.signature_ok, "the fake server could not verify the SigV4 signature"
    assert seen.body == b'{"database": "orders-prod", "db_user": "orders_app"}'


def test_token_is_cached_until_about_eighty_percent_of_its_life(server: FakeVendServer, clock: FrozenClock) -> None:
    client = _client(server, clock)  # ttl 840 s, refresh between 72 % and 80 %
    assert client.token("orders-prod", "orders_app") == "tok-1"
    clock.advance(0.71 * 840)
    assert client.token("orders-prod", "orders_app") == "tok-1"
    assert len(server.posts) == 1
    clock.advance(0.10 * 840)  # now at 81 %
    assert client.token("orders-prod", "orders_app") == "tok-2"
    assert len(server.posts) == 2


def test_refresh_point_is_jittered_between_processes(server: FakeVendServer, clock: FrozenClock) -> None:
    points = set()
    for seed in range(8):
        api = VendApi(server.url, session=_session(), clock=clock)
        client = TokenClient(api=api, clock=clock, rng=random.Random(seed))
        client.get("orders-prod", "orders_app")
        entry = client._entries[("orders-prod", "orders_app")]
        offset = (entry.refresh_at - clock.monotonic()) / 840
        assert 0.72 - 1e-9 <= offset <= 0.80
        points.add(round(offset, 4))
    assert len(points) > 1, "every client would refresh at the same instant"


def test_keys_are_cached_separately(server: FakeVendServer, clock: FrozenClock) -> None:
    client = _client(server, clock)
    first = client.get("orders-prod", "orders_app")
    second = client.get("orders-prod", "orders_admin")
    assert (first.db_user, second.db_user) == ("orders_app", "orders_admin")
    assert first.token != second.token
    assert len(server.posts) == 2


def test_many_threads_without_a_token_cause_one_request(server: FakeVendServer, clock: FrozenClock) -> None:
    server.gate = threading.Event()
    client = _client(server, clock)
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        try:
            results.append(client.token("orders-prod", "orders_app"))
        except BaseException as exc:  # noqa: BLE001 - a worker thread's failure, whatever it is, is reported below  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    assert server.entered.wait(5)
    server.gate.set()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert results == ["tok-1"] * 16
    assert len(server.posts) == 1


def test_while_one_thread_refreshes_others_keep_the_valid_token(server: FakeVendServer, clock: FrozenClock) -> None:
    client = _client(server, clock)
    assert client.token("orders-prod", "orders_app") == "tok-1"
    clock.advance(0.85 * 840)  # due for refresh, still valid for ~126 s
    server.gate = threading.Event()
    server.entered.clear()
    refreshed: list[str] = []
    refresher = threading.Thread(target=lambda: refreshed.append(client.token("orders-prod", "orders_app")))
    refresher.start()
    assert server.entered.wait(5)
    # The refresh is stuck in the server; other callers are not blocked behind it.
    others = [client.token("orders-prod", "orders_app") for _ in range(5)]
    assert others == ["tok-1"] * 5
    assert len(server.posts) == 2
    server.gate.set()
    refresher.join(10)
    assert refreshed == ["tok-2"]
    assert client.token("orders-prod", "orders_app") == "tok-2"


def test_rate_limited_refresh_keeps_serving_the_valid_token_and_honours_retry_after(server: FakeVendServer,
                                                                                    clock: FrozenClock) -> None:
    client = _client(server, clock)
    assert client.token("orders-prod", "orders_app") == "tok-1"
    server.responder = lambda n, seen: error_reply(429, "rate_limited", retry_after=30)
    clock.advance(0.85 * 840)
    assert client.token("orders-prod", "orders_app") == "tok-1"
    assert len(server.posts) == 2
    clock.advance(20)  # inside Retry-After: no new request
    assert client.token("orders-prod", "orders_app") == "tok-1"
    assert len(server.posts) == 2
    server.responder = None
    clock.advance(11)  # past Retry-After
    assert client.token("orders-prod", "orders_app") == "tok-3"
    assert len(server.posts) == 3


def test_backoff_grows_when_the_service_keeps_failing(server: FakeVendServer, clock: FrozenClock) -> None:
    server.responder = lambda n, seen: error_reply(503, "upstream_unavailable")
    client = _client(server, clock, backoff_base=2.0, backoff_max=60.0)
    waits = []
    for _ in range(5):
        with pytest.raises(VendError):
            client.token("orders-prod", "orders_app")
        entry = client._entries[("orders-prod", "orders_app")]
        waits.append(entry.backoff_until - clock.monotonic())
        clock.advance(waits[-1] + 0.01)
    assert waits == sorted(waits) and waits[-1] > waits[0]
    assert waits[-1] <= 60.0
    assert len(server.posts) == 5


def test_without_a_token_a_503_is_raised_and_not_retried_during_backoff(server: FakeVendServer,
                                                                        clock: FrozenClock) -> None:
    server.responder = lambda n, seen: error_reply(503, "upstream_unavailable", retry_after=5)
    client = _client(server, clock)
    with pytest.raises(VendError) as first:
        client.token("orders-prod", "orders_app")
    assert first.value.code == "upstream_unavailable" and first.value.retry_after == 5
    with pytest.raises(VendError):
        client.token("orders-prod", "orders_app")
    assert len(server.posts) == 1


def test_an_expired_token_is_never_served_even_while_backing_off(server: FakeVendServer, clock: FrozenClock) -> None:
    client = _client(server, clock)
    assert client.token("orders-prod", "orders_app") == "tok-1"
    server.responder = lambda n, seen: error_reply(503, "upstream_unavailable", retry_after=600)
    clock.advance(0.85 * 840)
    assert client.token("orders-prod", "orders_app") == "tok-1"  # still valid
    clock.advance(0.15 * 840)  # now past its expiry, still inside the backoff
    with pytest.raises(VendError) as raised:
        client.token("orders-prod", "orders_app")
    assert raised.value.code == "upstream_unavailable"


def test_forbidden_is_raised_at_once_and_not_masked(server: FakeVendServer, clock: FrozenClock) -> None:
    server.responder = lambda n, seen: error_reply(403, "forbidden")
    client = _client(server, clock)
    for expected_requests in (1, 2):
        with pytest.raises(VendError) as raised:
            client.token("orders-prod", "orders_app")
        assert raised.value.code == "forbidden" and raised.value.status == 403
        assert len(server.posts) == expected_requests


class WatchedClock(FrozenClock):
    """A frozen clock that tells when ``threads`` threads other than its creator have read it.

    ``TokenClient.get`` reads the clock while it holds the key's lock, to choose between the
    cached token, a refresh of its own, or waiting for the refresh in flight. So once every
    worker has read it while that refresh is held in the server, each of them has made its
    choice: no worker can still arrive after the refresh has ended."""

    def __init__(self, at: datetime, threads: int) -> None:
        super().__init__(at)
        self.threads = threads
        self.all_read = threading.Event()
        self._creator = threading.get_ident()
        self._readers: set[int] = set()
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            if threading.get_ident() != self._creator:
                self._readers.add(threading.get_ident())
                if len(self._readers) >= self.threads:
                    self.all_read.set()
        return super().monotonic()


def test_threads_waiting_for_a_failed_refresh_share_its_error(server: FakeVendServer) -> None:
    server.gate = threading.Event()
    server.responder = lambda n, seen: error_reply(403, "forbidden")
    clock = WatchedClock(datetime(2026, 11, 22, 10, 0, tzinfo=UTC), threads=8)
    client = _client(server, clock)
    codes: list[str] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        try:
            client.token("orders-prod", "orders_app")
        except VendError as exc:
            codes.append(exc.code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert server.entered.wait(10)
    # Release the failing refresh only once the seven others have found it in flight: a thread
    # that arrived after it had failed would rightly send its own request (errors other than
    # 429/503 are not cached), which is not what this test is about.
    assert clock.all_read.wait(10), "not every thread asked for a token"
    server.gate.set()
    for thread in threads:
        thread.join(10)
    assert codes == ["forbidden"] * 8
    assert len(server.posts) == 1


def test_invalidate_forces_a_new_token(server: FakeVendServer, clock: FrozenClock) -> None:
    client = _client(server, clock)
    assert client.token("orders-prod", "orders_app") == "tok-1"
    client.invalidate("orders-prod", "orders_app")
    assert client.token("orders-prod", "orders_app") == "tok-2"


def test_vended_token_repr_hides_the_token(server: FakeVendServer, clock: FrozenClock) -> None:
    vended = _client(server, clock).get("orders-prod", "orders_app")
    assert "tok-1" not in repr(vended) and "tok-1" not in str(vended)


def test_an_answer_with_dbname_null_is_a_token_not_a_bad_answer(server: FakeVendServer, clock: FrozenClock) -> None:
    from rdsvend.connect import connection_params, libpq_env

    server.responder = functools.partial(_with_dbname, None)
    client = _client(server, clock)
    assert client.token("orders-prod", "orders_app") == "tok-1"
    vended = client.get("orders-prod", "orders_app")
    assert vended.dbname is None
    assert "dbname" not in connection_params(vended) and "PGDATABASE" not in libpq_env(vended)
    # an empty string or a number is still a broken answer
    for bad in ("", 5):
        server.responder = functools.partial(_with_dbname, bad)
        with pytest.raises(VendError) as caught:
            _client(server, clock).token("orders-prod", "orders_app")
        assert caught.value.code == "bad_answer"
