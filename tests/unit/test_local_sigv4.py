"""SigV4 verification for the local stack, against signatures made by botocore itself."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import quote

import botocore.session
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.local.sigv4 import (
    Credential,
    SecretLookup,
    SignatureError,
    StaticSecretLookup,
    VerifiedRequest,
    verify_header_signed,
    verify_presigned,
)
from tests.support.examples import examples

AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
REGION = "eu-west-1"
LONG = Credential("AKIALONGTERM0000001", "long/secret+KEY0000000000000000000000000", None,
                  "arn:aws:iam::111122223333:user/alice", "111122223333")
SESSION = Credential("ASIASESSION00000001", "sess/secret+KEY0000000000000000000000000",
                     "FwoGZXIvYXdzEJr//////////wEaDSessionToken+/=", "arn:aws:sts::111122223333:assumed-role/signer/s1",
                     "111122223333")
OTHER = Credential("AKIAOTHERKEY0000001", "other-secret-0000000000000000000000000", None,
                   "arn:aws:iam::111122223333:user/bob", "111122223333")
SECRETS = [c.secret_key for c in (LONG, SESSION, OTHER)] + [str(SESSION.session_token)]


@pytest.fixture
def lookup() -> StaticSecretLookup:
    return StaticSecretLookup([LONG, SESSION, OTHER])


def _frozen(at: datetime) -> Any:
    return mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None))


@functools.cache
def _rds_client(cred: Credential) -> Any:
    session = botocore.session.Session()
    session.set_credentials(cred.access_key_id, cred.secret_key, cred.session_token)
    return session.create_client("rds", region_name="us-east-1")


def db_token(cred: Credential, host: str = "db.local", port: int = 5432, user: str = "app_user",
             region: str = REGION, at: datetime = AT) -> str:
    client = _rds_client(cred)
    with _frozen(at):
        return str(client.generate_db_auth_token(host, port, user, region))


def signed_request(cred: Credential, method: str = "POST", url: str = "http://127.0.0.1:8080/api/v1/vend?b=2&a=x%20y",
                   body: bytes = b'{"database":"orders"}', service: str = "execute-api", region: str = REGION,
                   at: datetime = AT) -> tuple[str, str, dict[str, str], bytes]:
    request = AWSRequest(method=method, url=url, data=body,
                         headers={"Content-Type": "application/json", "Host": "127.0.0.1:8080"})
    with _frozen(at):
        SigV4Auth(Credentials(cred.access_key_id, cred.secret_key, cred.session_token), service, region).add_auth(request)
    prepared = request.prepare()
    sent = prepared.body or b""
    assert isinstance(sent, bytes)
    return prepared.method, prepared.url, dict(prepared.headers), sent


def _reason(fn: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(SignatureError) as info:
        fn(*args, **kwargs)
    text = f"{info.value} {info.value!r} {info.value.detail}"
    for secret in SECRETS:
        assert secret not in text
    return info.value.reason


def _presigned(token: str, lookup: SecretLookup, now: datetime = AT, **kw: Any) -> VerifiedRequest:
    return verify_presigned(token, service="rds-db", lookup=lookup, now=now, **kw)


def _replace_param(token: str, name: str, value: str) -> str:
    parts = token.split("&")
    out = []
    for part in parts:
        key = part.split("?")[-1].split("=")[0]
        if key == name:
            prefix = part[: len(part) - len(part.split("?")[-1])]
            out.append(f"{prefix}{name}={quote(value, safe='-_.~')}")
        else:
            out.append(part)
    return "&".join(out)


# --- presigned (RDS tokens) ---------------------------------------------------------------

@pytest.mark.parametrize("cred", [LONG, SESSION], ids=["long-term", "session"])
def test_valid_db_token_verifies_and_says_what_it_proves(cred: Credential, lookup: StaticSecretLookup) -> None:
    token = db_token(cred, user="app user@x")
    verified = _presigned(token, lookup, now=AT + timedelta(seconds=899), region=REGION)
    assert verified.credential == cred
    assert verified.host == "db.local:5432"
    assert dict(verified.params) == {"Action": "connect", "DBUser": "app user@x"}
    assert (verified.service, verified.region) == ("rds-db", REGION)
    assert verified.signed_at == AT
    assert verified.expires_at == AT + timedelta(seconds=900)


def test_full_url_form_verifies(lookup: StaticSecretLookup) -> None:
    assert _presigned("https://" + db_token(LONG), lookup).host == "db.local:5432"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("db.local:5432", "db.local.:5432"),
        lambda t: t.replace("db.local:5432", "other.local:5432"),
        lambda t: t.replace("db.local:5432", "db.local:5433"),
        lambda t: _replace_param(t, "DBUser", "admin"),
        lambda t: _replace_param(t, "Action", "disconnect"),
        lambda t: _replace_param(t, "X-Amz-Date", "20250304T050608Z"),
        lambda t: _replace_param(t, "X-Amz-Expires", "899"),
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),
        lambda t: t.replace("/?", "/x?"),
        lambda t: t + "&Extra=1",
    ],
    ids=["host-dot", "host", "port", "dbuser", "action", "date", "expires", "signature", "path", "extra-param"],
)
def test_tampered_token_is_a_bad_signature(mutate: Callable[[str], str], lookup: StaticSecretLookup) -> None:
    token = db_token(LONG)
    tampered = mutate(token)
    assert tampered != token
    assert _reason(_presigned, tampered, lookup) == "bad_signature"


def test_token_signed_with_another_secret_is_refused(lookup: StaticSecretLookup) -> None:
    forged = Credential(LONG.access_key_id, "not-the-secret", None, LONG.principal_arn, LONG.account)
    assert _reason(_presigned, db_token(forged), lookup) == "bad_signature"


def test_unknown_access_key_is_refused(lookup: StaticSecretLookup) -> None:
    lookup.remove(OTHER.access_key_id)
    assert _reason(_presigned, db_token(OTHER), lookup) == "unknown_key"


def test_expired_token_is_refused_only_after_900_seconds(lookup: StaticSecretLookup) -> None:
    token = db_token(LONG)
    _presigned(token, lookup, now=AT + timedelta(seconds=900))
    assert _reason(_presigned, token, lookup, now=AT + timedelta(seconds=901)) == "expired"


def test_token_from_the_future_is_refused_beyond_the_skew(lookup: StaticSecretLookup) -> None:
    token = db_token(LONG)
    _presigned(token, lookup, now=AT - timedelta(minutes=5))
    assert _reason(_presigned, token, lookup, now=AT - timedelta(minutes=5, seconds=1)) == "stale"


def test_expires_longer_than_allowed_is_refused(lookup: StaticSecretLookup) -> None:
    request = AWSRequest(method="GET", url="https://db.local:5432/", params={"Action": "connect", "DBUser": "u"})
    with _frozen(AT):
        SigV4QueryAuth(Credentials(LONG.access_key_id, LONG.secret_key), "rds-db", REGION, expires=3600).add_auth(request)
    assert request.url is not None
    token = request.url[len("https://"):]
    assert _reason(_presigned, token, lookup) == "expires_too_long"
    assert _presigned(token, lookup, max_expires=3600).params["DBUser"] == "u"


def test_wrong_service_and_region_are_refused(lookup: StaticSecretLookup) -> None:
    token = db_token(LONG)
    assert _reason(verify_presigned, token, service="execute-api", lookup=lookup, now=AT) == "wrong_service"
    assert _reason(_presigned, token, lookup, region="us-east-1") == "wrong_region"
    other_region = db_token(LONG, region="us-east-1")
    assert _presigned(other_region, lookup).region == "us-east-1"


def test_session_token_missing_or_wrong_is_refused(lookup: StaticSecretLookup) -> None:
    token = db_token(SESSION)
    without = "&".join(p for p in token.split("&") if not p.startswith("X-Amz-Security-Token="))
    assert _reason(_presigned, without, lookup) == "bad_session_token"
    wrong = _replace_param(token, "X-Amz-Security-Token", "FwoGZXIvYXdzEJr//////////wEaDSessionToken+/X")
    assert _reason(_presigned, wrong, lookup) == "bad_session_token"


def test_session_token_sent_with_a_long_term_key_is_refused(lookup: StaticSecretLookup) -> None:
    token = db_token(LONG) + "&X-Amz-Security-Token=abc"
    assert _reason(_presigned, token, lookup) == "bad_session_token"


@pytest.mark.parametrize(
    "token, reason",
    [
        ("", "missing"),
        ("db.local:5432/?Action=connect&DBUser=u", "missing"),
        ("db.local:99999/?X-Amz-Signature=a&X-Amz-Credential=b", "malformed"),
        ("db.local:5432/?" + "a=1&" * 100, "malformed"),
        ("x" * 20000, "malformed"),
    ],
)
def test_garbage_is_refused_with_a_clear_reason(token: str, reason: str, lookup: StaticSecretLookup) -> None:
    assert _reason(_presigned, token, lookup) == reason


def test_duplicated_dbuser_is_malformed(lookup: StaticSecretLookup) -> None:
    token = db_token(LONG)
    assert _reason(_presigned, token + "&DBUser=admin", lookup) == "malformed"


_SESSION_TOKEN = db_token(SESSION)


@settings(max_examples=examples(150), deadline=None)
@given(position=st.integers(min_value=0), replacement=st.sampled_from("aZ09%/&=?:.-_~+ "))
def test_no_single_character_change_yields_a_different_verified_token(position: int, replacement: str) -> None:
    lookup = StaticSecretLookup([LONG, SESSION])
    token = _SESSION_TOKEN
    original = _presigned(token, lookup)
    index = position % len(token)
    mutated = token[:index] + replacement + token[index + 1:]
    try:
        verified = _presigned(mutated, lookup)
    except SignatureError:
        return
    assert verified == original


# --- header-signed (the gateway) ----------------------------------------------------------

def _header(method: str, url: str, headers: Mapping[str, str], body: bytes, lookup: SecretLookup, now: datetime = AT,
            **kw: Any) -> VerifiedRequest:
    return verify_header_signed(method, url, headers, body, service="execute-api", lookup=lookup, now=now, **kw)


@pytest.mark.parametrize("cred", [LONG, SESSION], ids=["long-term", "session"])
def test_valid_header_signed_request_verifies(cred: Credential, lookup: StaticSecretLookup) -> None:
    verified = _header(*signed_request(cred), lookup, region=REGION)
    assert verified.credential == cred
    assert verified.path == "/api/v1/vend"
    assert dict(verified.params) == {"a": "x y", "b": "2"}
    assert verified.host == "127.0.0.1:8080"


def test_encoded_path_verifies(lookup: StaticSecretLookup) -> None:
    method, url, headers, body = signed_request(LONG, method="GET", url="http://127.0.0.1:8080/db/orders%2Fx%20y", body=b"")
    assert _header(method, url, headers, body, lookup).path == "/db/orders%2Fx%20y"


def test_header_names_are_case_insensitive(lookup: StaticSecretLookup) -> None:
    method, url, headers, body = signed_request(LONG)
    assert _header(method, url, {k.upper(): v for k, v in headers.items()}, body, lookup).credential == LONG


@pytest.mark.parametrize(
    "change",
    [
        lambda m, u, h, b: ("PUT", u, h, b),
        lambda m, u, h, b: (m, u.replace("/vend", "/vent"), h, b),
        lambda m, u, h, b: (m, u.replace("b=2", "b=3"), h, b),
        lambda m, u, h, b: (m, u + "&c=1", h, b),
        lambda m, u, h, b: (m, u, h, b + b" "),
        lambda m, u, h, b: (m, u, {**h, "Content-Type": "text/plain"}, b),
        lambda m, u, h, b: (m, u, {**h, "Host": "127.0.0.1:8081"}, b),
        lambda m, u, h, b: (m, u, {**h, "Authorization": h["Authorization"][:-1] + ("0" if h["Authorization"][-1] != "0" else "1")}, b),
        lambda m, u, h, b: (m, u, {**h, "X-Amz-Content-SHA256": "0" * 64}, b),
    ],
    ids=["method", "path", "query", "extra-query", "body", "signed-header", "host", "signature", "payload-hash"],
)
def test_tampered_header_signed_request_is_a_bad_signature(
    change: Callable[[str, str, dict[str, str], bytes], tuple[str, str, dict[str, str], bytes]],
    lookup: StaticSecretLookup,
) -> None:
    assert _reason(_header, *change(*signed_request(LONG)), lookup) == "bad_signature"


def test_unsigned_extra_header_does_not_matter(lookup: StaticSecretLookup) -> None:
    method, url, headers, body = signed_request(LONG)
    assert _header(method, url, {**headers, "User-Agent": "curl"}, body, lookup).credential == LONG


def test_stale_header_signed_request_is_refused_both_ways(lookup: StaticSecretLookup) -> None:
    request = signed_request(LONG)
    _header(*request, lookup, now=AT + timedelta(minutes=5))
    assert _reason(_header, *request, lookup, now=AT + timedelta(minutes=5, seconds=1)) == "stale"
    assert _reason(_header, *request, lookup, now=AT - timedelta(minutes=5, seconds=1)) == "stale"


def test_header_signed_wrong_key_service_region_session(lookup: StaticSecretLookup) -> None:
    assert _reason(_header, *signed_request(OTHER), StaticSecretLookup([LONG])) == "unknown_key"
    assert _reason(_header, *signed_request(LONG, service="rds-db"), lookup) == "wrong_service"
    assert _reason(_header, *signed_request(LONG), lookup, region="us-east-1") == "wrong_region"
    method, url, headers, body = signed_request(SESSION)
    headers.pop("X-Amz-Security-Token")
    assert _reason(_header, method, url, headers, body, lookup) == "bad_session_token"
    method, url, headers, body = signed_request(LONG)
    unsigned = {**headers, "X-Amz-Security-Token": SESSION.session_token}
    assert _reason(_header, method, url, unsigned, body, StaticSecretLookup([SESSION, LONG])) == "bad_session_token"


def test_unsigned_request_is_missing(lookup: StaticSecretLookup) -> None:
    assert _reason(_header, "GET", "http://127.0.0.1:8080/", {"Host": "127.0.0.1:8080"}, b"", lookup) == "missing"


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA1 Credential=a/20250304/eu-west-1/execute-api/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20250304/eu-west-1/execute-api, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20250304/eu-west-1/execute-api/aws4_request, SignedHeaders=x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20250304/eu-west-1/execute-api/aws4_request, SignedHeaders=host, Signature=zz",
        "AWS4-HMAC-SHA256 garbage",
    ],
)
def test_malformed_authorization_is_refused(authorization: str, lookup: StaticSecretLookup) -> None:
    headers = {"Host": "h", "X-Amz-Date": "20250304T050607Z", "Authorization": authorization}
    assert _reason(_header, "GET", "http://h/", headers, b"", lookup) == "malformed"
