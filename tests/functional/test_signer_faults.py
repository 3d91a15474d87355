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


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", accepted
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    sock.close()


def test_a_hanging_sts_times_out_after_bounded_retries(silent_server: tuple[str, list[socket.socket]],
                                                       no_backoff_sleep: MagicMock) -> None:
    url, accepted = silent_server
    config = Config(connect_timeout=0.3, read_timeout=0.3, retries={"mode": "standard", "total_max_attempts": 2})
    session = boto3.Session()

    def factory(service: str, region: str | None = None) -> Any:
        return session.client(service, region_name=region, endpoint_url=url, config=config)

    with pytest.raises(UpstreamUnavailableError) as info:
        mint(minter_for(factory))
    assert info.value.service == "sts"
    assert "ReadTimeout" in info.value.detail
    assert len(accepted) == 2  # one connection per attempt, then it gave up


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
