"""STS faults: throttling, timeouts and refusals end as UpstreamUnavailableError after bounded retries."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from unittest.mock import MagicMock

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from chalicelib.errors import UpstreamUnavailableError
from chalicelib.identity import identity_from_arn
from chalicelib.policy.model import Database, DbUser
from chalicelib.signer import MintedToken, TokenMinter
from chalicelib.signer.roles import StsRoleAssumer
from tests.support.aws import FaultInjector

CALLER = identity_from_arn("arn:aws:sts::111122223333:assumed-role/orders-api-1/i-0abc")
DB = Database(name="orders-prod", engine="postgres", region="us-east-1", kind="instance",
              identifier="orders-prod", users={"orders_app": DbUser("orders_app", "iam")},
              signer_role="arn:aws:iam::444455556666:role/rdsvend-signer")


def minter_for(factory: Any) -> TokenMinter:
    return TokenMinter(assume_role=StsRoleAssumer(factory))


def mint(minter: TokenMinter) -> MintedToken:
    return minter.mint(CALLER, DB, "orders_app", "h.example", 5432, resource_id="db-ABC")


@pytest.fixture
def no_backoff_sleep() -> Iterator[MagicMock]:
    with mock.patch("botocore.endpoint.time.sleep") as sleep:
        yield sleep


def test_throttling_is_retried_a_bounded_number_of_times_then_503(no_backoff_sleep: MagicMock) -> None:
    faults = FaultInjector("Throttling", 400)
    with pytest.raises(UpstreamUnavailableError) as info:
        mint(minter_for(faults.factory))
    allowed = faults.factory("sts", "us-east-1").meta.config.retries["total_max_attempts"]
    assert 1 < allowed <= 5  # the production config retries, but not forever
    assert faults.attempts == allowed
    assert no_backoff_sleep.call_count == allowed - 1  # botocore backed off between attempts
    err = info.value
    assert (err.status, err.code, err.service, err.retry_after) == (503, "upstream_unavailable", "sts", 2)
    assert "Throttling" in err.detail and "rdsvend-signer" in err.detail
    assert err.__cause__ is None and err.__suppress_context__


def test_a_throttle_that_clears_within_the_retries_still_vends(no_backoff_sleep: MagicMock) -> None:
    with mock_aws():
        faults = FaultInjector("Throttling", 400, failures=2)
        token = mint(minter_for(faults.factory))
    assert faults.attempts == 3
    assert "X-Amz-Security-Token=" in token.token


def test_server_errors_are_retried_then_503(no_backoff_sleep: MagicMock) -> None:
    faults = FaultInjector("InternalFailure", 500)
    with pytest.raises(UpstreamUnavailableError) as info:
        mint(minter_for(faults.factory))
    assert faults.attempts == faults.factory("sts", "us-east-1").meta.config.retries["total_max_attempts"]
    assert info.value.retry_after == 5


def test_access_denied_is_not_retried_and_is_503(no_backoff_sleep: MagicMock) -> None:
    faults = FaultInjector("AccessDenied", 403)
    with pytest.raises(UpstreamUnavailableError) as info:
        mint(minter_for(faults.factory))
    assert faults.attempts == 1
    assert "AccessDenied" in info.value.detail


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                continue

    def connections(self) -> int:
        """Every connection made so far: the accepting thread may not have run since the last
        one was made (the kernel completes it from the listen backlog), so the server stops
        and takes what is still waiting there."""
        self.stop.set()
        self.thread.join(5)
        self.sock.setblocking(False)
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except BlockingIOError:
                return len(self.accepted)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_a_hanging_sts_times_out_after_bounded_retries(silent_server: SilentServer, no_backoff_sleep: MagicMock) -> None:
    config = Config(connect_timeout=0.3, read_timeout=0.3, retries={"mode": "standard", "total_max_attempts": 2})
    session = boto3.Session()

    def factory(service: str, region: str | None = None) -> Any:
        return session.client(service, region_name=region, endpoint_url=silent_server.url, config=config)

    with pytest.raises(UpstreamUnavailableError) as info:
        mint(minter_for(factory))
    assert info.value.service == "sts"
    assert "ReadTimeout" in info.value.detail
    assert silent_server.connections() == 2  # one connection per attempt, then it gave up


def test_missing_function_credentials_are_503_not_a_botocore_exception(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    plain = Database(**{**DB.__dict__, "signer_role": None})
    with pytest.raises(UpstreamUnavailableError) as info:
        TokenMinter().mint(CALLER, plain, "orders_app", "h.example", 5432)
    assert info.value.service == "credentials"
