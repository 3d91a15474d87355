"""The fast signer is byte-identical to botocore's generate_db_auth_token."""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any
from unittest import mock

import botocore.session
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chalicelib.signer.credentials import SigningCredentials
from chalicelib.signer.sigv4 import RdsTokenSigner, SigningKeyCache, host_header
from tests.support.examples import examples

_SESSION = botocore.session.get_session()
_SIGNER = RdsTokenSigner()  # shared on purpose: the key cache is exercised across examples


def botocore_token(creds: SigningCredentials, host: str, port: int, user: str, region: str, at: datetime) -> str:
    client: Any = _SESSION.create_client(
        "rds",
        region_name="us-east-1",
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
    )
    naive = at.astimezone(UTC).replace(tzinfo=None)
    # botocore.auth reads the time through get_current_datetime() (naive UTC).
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
        return str(client.generate_db_auth_token(
            DBHostname=host, Port=port, DBUsername=user, Region=region
        ))


_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.lists(_label, min_size=1, max_size=5).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.sampled_from(
        ["orders-prod.abc123.us-east-1.rds.amazonaws.com", "ORDERS.Cluster-ro-X.eu-west-1.rds.amazonaws.com",
         "localhost", "127.0.0.1", "[::1]"]
    ),
)
ports = st.one_of(st.integers(1, 65535), st.sampled_from([443, 5432, 3306, 80, 1]))
odd = st.sampled_from(list(" %/+=&?#;:@!*'()[]~.-_\\\"\tüé中😀\u00a0"))
users = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    st.lists(st.one_of(odd, st.characters(min_codepoint=33, max_codepoint=126)), min_size=1, max_size=30).map("".join),
)
regions = st.one_of(
    st.sampled_from(["us-east-1", "eu-west-2", "ap-southeast-2", "us-gov-west-1", "cn-north-1", "il-central-1"]),
    st.from_regex(r"[a-z]{2}-[a-z]{4,9}-[1-9]", fullmatch=True),
)
_days = st.dates(min_value=datetime(2000, 1, 1).date(), max_value=datetime(2099, 12, 31).date())
instants = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    # midnight UTC and either side of it: the date in the scope and the signing key change
    st.builds(
        lambda d, s, us: datetime.combine(d, time(0, 0)) + timedelta(seconds=s, microseconds=us),
        _days, st.integers(-2, 1), st.sampled_from([0, 1, 999_999]),
    ),
).map(lambda d: d.replace(tzinfo=UTC))
b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
credentials = st.builds(
    SigningCredentials,
    access_key=st.from_regex(r"(AKIA|ASIA)[A-Z0-9]{12,16}", fullmatch=True),
    secret_key=st.sampled_from(["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "se/cr+et=="]) | st.text(b64, min_size=1, max_size=40),
    token=st.none() | st.text(b64, min_size=1, max_size=300),
)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(creds=credentials, host=hosts, port=ports, user=users, region=regions, at=instants)
@example(
    creds=SigningCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "IQoJb3JpZ2luX2VjE+/=="),
    host="db.example.com", port=443, user="a b%/+=&ü", region="us-east-1",
    at=datetime(2030, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
)
@example(
    creds=SigningCredentials("AKIDEXAMPLE", "secret"), host="db.example.com", port=5432,
    user="orders_app", region="us-east-1", at=datetime(2031, 1, 1, 0, 0, 0, tzinfo=UTC),
)
def test_token_is_byte_identical_to_botocore(
    creds: SigningCredentials,
    host: str,
    port: int,
    user: str,
    region: str,
    at: datetime,
) -> None:
    ours = _SIGNER.sign(creds, host=host, port=port, db_user=user, region=region, at=at)
    assert ours == botocore_token(creds, host, port, user, region, at)


def test_token_names_the_endpoint_and_lasts_900_seconds() -> None:
    creds = SigningCredentials("AKIDEXAMPLE", "secret", "tok")
    at = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    token = RdsTokenSigner().sign(creds, host="db.example.com", port=5432, db_user="app", region="us-east-1", at=at)
    assert token.startswith("db.example.com:5432/?Action=connect&DBUser=app&")
    assert "X-Amz-Date=20300506T070809Z" in token
    assert "X-Amz-Expires=900" in token
    assert "X-Amz-Credential=AKIDEXAMPLE%2F20300506%2Fus-east-1%2Frds-db%2Faws4_request" in token


def test_signing_key_cache_is_per_date_and_region() -> None:
    cache = SigningKeyCache(size=3)
    k1 = cache.get("s", "20300101", "us-east-1", "rds-db")
    assert cache.get("s", "20300101", "us-east-1", "rds-db") is k1
    assert cache.get("s", "20300102", "us-east-1", "rds-db") != k1
    assert cache.get("s", "20300101", "eu-west-1", "rds-db") != k1
    assert cache.get("t", "20300101", "us-east-1", "rds-db") != k1
    assert len(cache) == 3  # bounded: the oldest entry was dropped
    assert repr(cache) == "SigningKeyCache(entries=3)"  # never a key or a secret


def test_non_utc_instants_are_signed_in_utc() -> None:
    creds = SigningCredentials("AKID", "secret")
    utc = datetime(2030, 1, 1, 0, 30, tzinfo=UTC)
    local = utc.astimezone(timezone(timedelta(hours=-5)))
    signer = RdsTokenSigner()
    def sign(at: datetime) -> str:
        return signer.sign(creds, host="h.example", port=5432, db_user="u", region="us-east-1", at=at)

    assert sign(local) == sign(utc)


@pytest.mark.parametrize(
    ("host", "port"),
    [("db/evil", 5432), ("db example", 5432), ("db.example.com?x=1", 5432), ("", 5432), ("db", 0), ("db", 70000)],
)
def test_bad_endpoints_are_refused(host: str, port: int) -> None:
    with pytest.raises(ValueError, match="invalid database"):
        host_header(host, port)


def test_bad_region_and_empty_user_are_refused() -> None:
    creds = SigningCredentials("AKID", "secret")
    at = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="invalid region"):
        RdsTokenSigner().sign(creds, host="h", port=1, db_user="u", region="us east", at=at)
    with pytest.raises(ValueError, match="empty db user"):
        RdsTokenSigner().sign(creds, host="h", port=1, db_user="", region="us-east-1", at=at)


def test_credentials_repr_hides_secrets() -> None:
    creds = SigningCredentials("AKIDEXAMPLE", "SECRETKEY123", "SESSIONTOKEN456")
    assert "AKIDEXAMPLE" in repr(creds)
    assert "SECRETKEY123" not in repr(creds) and "SESSIONTOKEN456" not in repr(creds)


def test_one_signer_across_midnight_and_credential_changes_stays_identical() -> None:
    signer = RdsTokenSigner()
    first = SigningCredentials("ASIAFIRST", "secret-one", "token-one")
    rotated = SigningCredentials("ASIASECOND", "secret-two", None)
    before = datetime(2030, 6, 30, 23, 59, 59, 900_000, tzinfo=UTC)
    after = datetime(2030, 7, 1, 0, 0, 0, tzinfo=UTC)
    for creds, at in [(first, before), (first, after), (rotated, after), (first, before), (rotated, before)]:
        ours = signer.sign(creds, host="db.example.com", port=5432, db_user="app", region="us-east-1", at=at)
        assert ours == botocore_token(creds, "db.example.com", 5432, "app", "us-east-1", at)
