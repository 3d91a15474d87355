"""``mint``: tokens/s of rdsvend's signer vs botocore's ``generate_db_auth_token``.

Both sign with the same session credentials, host, port and user, in this process. The
rdsvend side is :meth:`TokenMinter.mint` with the token cache off, so every call really
signs (credentials, clock, SigV4, honest expiry); the botocore client is created before
timing. Every rdsvend token is also checked against botocore's at a frozen instant.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock

from bench.bench_vend import (
    HOST,
    PORT,
    REGION,
    bench_env,
    botocore_rds_client,
    rate,
    result,
    static_minter,
)

TARGET = 10.0


def run() -> list[dict[str, Any]]:
    bench_env()
    from chalicelib.identity import identity_from_arn
    from chalicelib.policy.model import Database, DbUser

    identity = identity_from_arn("arn:aws:sts::111122223333:assumed-role/orders-api-blue/i-0abc")
    database = Database(name="orders-prod", engine="postgres", region=REGION, kind="instance",
                        identifier="orders-prod", users={"orders_app": DbUser("orders_app", "iam")},
                        host=HOST, port=PORT)
    minter = static_minter(cache_tokens=False)
    client = botocore_rds_client()

    # same bytes first: a fast signer that signs something else is no signer
    at = datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)
    from chalicelib.clock import FrozenClock
    from chalicelib.signer import TokenMinter

    check = TokenMinter(credentials=minter._credentials, clock=FrozenClock(at), cache_tokens=False)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        expected = client.generate_db_auth_token(DBHostname=HOST, Port=PORT, DBUsername="orders_app", Region=REGION)
    identical = check.mint(identity, database, "orders_app", HOST, PORT).token == expected

    def ours() -> None:
        minter.mint(identity, database, "orders_app", HOST, PORT)

    def botocore() -> None:
        client.generate_db_auth_token(DBHostname=HOST, Port=PORT, DBUsername="orders_app", Region=REGION)

    mine, base = [], []
    for _ in range(3):  # interleaved rounds, best of each
        base.append(rate(botocore, seconds=0.4, rounds=1))
        mine.append(rate(ours, seconds=0.4, rounds=1))
    value, baseline = max(mine), max(base)
    ratio = value / baseline
    return [result("mint", value, "tokens/s", baseline, ratio, f"ratio >= {TARGET:.0f}",
                   ratio >= TARGET and identical, byte_identical=identical)]
