"""Honest expiry and the token cache of the minter (no network)."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.clock import FrozenClock
from chalicelib.identity import CallerIdentity, identity_from_arn
from chalicelib.policy.model import Database, DbUser
from chalicelib.signer import MintedToken, SigningCredentials, TokenMinter

T0 = datetime(2030, 3, 4, 10, 0, 0, 250_000, tzinfo=UTC)
CALLER = identity_from_arn("arn:aws:sts::111122223333:assumed-role/orders-api-1/i-0abc")
OTHER = identity_from_arn("arn:aws:iam::111122223333:role/billing")
DB = Database(name="orders-prod", engine="postgres", region="us-east-1", kind="instance",
              identifier="orders-prod", users={"orders_app": DbUser("orders_app", "iam")})
HOST = "orders-prod.abc123.us-east-1.rds.amazonaws.com"


class CountingProvider:
    def __init__(self, creds: SigningCredentials) -> None:
        self.creds = creds
        self.calls = 0
        self.lock = threading.Lock()

    def credentials(self) -> SigningCredentials:
        with self.lock:
            self.calls += 1
        return self.creds


def make(expiry: datetime | None = None, clock: FrozenClock | None = None,
         ) -> tuple[TokenMinter, CountingProvider, FrozenClock]:
    clock = clock or FrozenClock(T0)
    provider = CountingProvider(SigningCredentials("ASIAEXAMPLE", "secret", "session", expiry))
    return TokenMinter(clock=clock, credentials=provider), provider, clock


def mint(minter: TokenMinter, who: CallerIdentity = CALLER, user: str = "orders_app") -> MintedToken:
    return minter.mint(who, DB, user, HOST, 5432)


def test_long_lived_credentials_give_the_full_fifteen_minutes_minus_the_margin() -> None:
    minter, _, _ = make()
    token = mint(minter)
    assert token.signed_at == T0.replace(microsecond=0)
    assert token.expires_at == token.signed_at + timedelta(seconds=870)
    assert token.ttl_at(token.signed_at) == 870
    assert "X-Amz-Date=20300304T100000Z" in token.token


def test_credentials_expiring_first_cap_the_token() -> None:
    expiry = T0 + timedelta(minutes=10)
    minter, _, _ = make(expiry)
    token = mint(minter)
    assert token.expires_at == expiry - timedelta(seconds=30)
    assert token.ttl_at(T0.replace(microsecond=0)) < 870


def test_a_cached_token_is_reused_while_it_has_five_minutes_left() -> None:
    minter, provider, clock = make()
    first = mint(minter)
    clock.advance(9 * 60)  # 5 min 30 s left
    again = mint(minter)
    assert again is first and provider.calls == 1
    clock.advance(31)  # 4 min 59 s left: never handed out
    fresh = mint(minter)
    assert fresh.token != first.token and provider.calls == 2
    assert fresh.ttl_at(clock.now()) >= 869


def test_a_token_with_under_five_minutes_is_never_handed_out_even_fresh_from_the_cache() -> None:
    # credentials that expire in 4 minutes: every token is short, none may be served from cache
    minter, provider, clock = make(T0 + timedelta(minutes=4))
    first = mint(minter)
    assert first.expires_at == T0 + timedelta(minutes=4) - timedelta(seconds=30)
    mint(minter)
    assert provider.calls == 2


def test_the_cache_is_per_caller_and_db_user() -> None:
    minter, provider, _ = make()
    mint(minter)
    mint(minter, who=OTHER)
    mint(minter, user="orders_owner")
    assert provider.calls == 3
    mint(minter, who=OTHER)
    assert provider.calls == 3


def test_without_a_cache_every_mint_signs() -> None:
    clock = FrozenClock(T0)
    provider = CountingProvider(SigningCredentials("AKID", "secret"))
    minter = TokenMinter(clock=clock, credentials=provider, cache_tokens=False)
    mint(minter), mint(minter)
    assert provider.calls == 2


def test_minted_token_repr_hides_the_token() -> None:
    minter, _, _ = make()
    token = mint(minter)
    assert "X-Amz-Signature" not in repr(token) and token.token not in repr(token)
    assert token.token not in repr(minter)


def test_positional_and_keyword_calls_agree() -> None:
    minter, _, _ = make()
    by_kw = minter.mint(identity=CALLER, database=DB, db_user="orders_app", host=HOST, port=5432)
    assert by_kw is mint(minter)


def test_a_bad_endpoint_is_a_one_line_value_error() -> None:
    minter, _, _ = make()
    with pytest.raises(ValueError, match="invalid database host 'bad host'"):
        minter.mint(CALLER, DB, "orders_app", "bad host", 5432)


def test_ttl_seconds_uses_the_system_clock() -> None:
    now = datetime.now(UTC)
    token = MintedToken("t", now, now + timedelta(seconds=600))
    assert 598 <= token.ttl_seconds <= 600
    assert token.ttl_at(now + timedelta(hours=1)) == 0
