"""The DSQL signer is byte-identical to botocore's DSQL token generators, for both actions."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock

import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.signer.credentials import SigningCredentials
from chalicelib.signer.sigv4 import DsqlTokenSigner
from tests.support.examples import examples

_SESSION = botocore.session.get_session()
_SIGNER = DsqlTokenSigner()
CREDS = SigningCredentials("ASIAEXAMPLEKEY000001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzE+/session=")
LONG_TERM = SigningCredentials("AKIAEXAMPLEKEY000002", "secret/with+plus=", None)
AT = datetime(2026, 12, 3, 19, 45, 7, tzinfo=UTC)
HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"


def botocore_token(creds: SigningCredentials, host: str, action: str, region: str, at: datetime,
                   expires: int = 900) -> str:
    client: Any = _SESSION.create_client("dsql", region_name=region, aws_access_key_id=creds.access_key,
                                    aws_secret_access_key=creds.secret_key, aws_session_token=creds.token)
    generate = (client.generate_db_connect_admin_auth_token if action == "DbConnectAdmin"
                else client.generate_db_connect_auth_token)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.astimezone(UTC).replace(tzinfo=None)):
        return str(generate(Hostname=host, Region=region, ExpiresIn=expires))


@pytest.mark.parametrize("action", ["DbConnect", "DbConnectAdmin"])
@pytest.mark.parametrize("creds", [CREDS, LONG_TERM], ids=["session", "long-term"])
def test_equals_botocore_on_fixed_credentials_and_time(action: str, creds: SigningCredentials) -> None:
    ours = _SIGNER.sign_dsql(creds, host=HOST, action=action, region="us-east-1", at=AT)
    assert ours == botocore_token(creds, HOST, action, "us-east-1", AT)
    assert ours.startswith(f"{HOST}/?Action={action}&X-Amz-Algorithm=AWS4-HMAC-SHA256")
    assert "%2Fdsql%2Faws4_request" in ours and "X-Amz-Expires=900" in ours


@pytest.mark.parametrize("action", ["DbConnect", "DbConnectAdmin"])
def test_lifetime_is_signed_as_botocore_signs_it(action: str) -> None:
    ours = _SIGNER.sign_dsql(CREDS, host=HOST, action=action, region="eu-west-1", at=AT, expires=3600)
    assert ours == botocore_token(CREDS, HOST, action, "eu-west-1", AT, 3600)
    assert "X-Amz-Expires=3600" in ours


@settings(max_examples=examples(60), deadline=None)
@given(cluster=st.from_regex(r"[a-z0-9]{26}", fullmatch=True),
       region=st.sampled_from(["us-east-1", "us-east-2", "eu-west-1", "ap-northeast-1"]),
       action=st.sampled_from(["DbConnect", "DbConnectAdmin"]),
       at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
       expires=st.integers(1, 604800))
def test_equals_botocore_everywhere(cluster: str, region: str, action: str, at: datetime, expires: int) -> None:
    at = at.replace(microsecond=0, tzinfo=UTC)
    host = f"{cluster}.dsql.{region}.on.aws"
    assert _SIGNER.sign_dsql(CREDS, host=host, action=action, region=region, at=at, expires=expires) == \
        botocore_token(CREDS, host, action, region, at, expires)


@pytest.mark.parametrize("bad", [{"action": "connect"}, {"expires": 0}, {"expires": 604801}, {"host": "[::1]"},
                                 {"host": "no spaces.example"}, {"region": "US-EAST-1"}])
def test_refuses_what_botocore_or_dsql_would(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"host": HOST, "action": "DbConnect", "region": "us-east-1", "at": AT, **bad}
    with pytest.raises(ValueError):
        _SIGNER.sign_dsql(CREDS, **args)  # type: ignore[arg-type]  # bad values on purpose


def test_repr_shows_no_secret() -> None:
    _SIGNER.sign_dsql(CREDS, host=HOST, action="DbConnect", region="us-east-1", at=AT)
    assert CREDS.secret_key not in repr(_SIGNER) and "FwoG" not in repr(_SIGNER)
