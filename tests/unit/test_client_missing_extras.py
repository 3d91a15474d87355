"""Without an optional dependency, the client's entry points say in one line which extra to
install, instead of a bare ModuleNotFoundError; an identity proof without a region says so
instead of signing for a region nobody chose."""
from __future__ import annotations

import sys

import pytest

from rdsvend import IdentityProofError, TokenClient, connect
from rdsvend.api import VendedToken
from rdsvend.errors import MissingExtraError
from rdsvend.proof import invoke_payload
from rdsvend.sqla import create_engine
from tests.support.client_fakes import token_body


class _Tokens(TokenClient):
    """A client whose every answer is for a database of ``engine`` (it asks no service)."""

    def __init__(self, engine: str = "postgres") -> None:
        super().__init__(api=object())
        self.engine = engine

    def get(self, database: str, db_user: str) -> VendedToken:
        body = {**token_body("tok-1", database, db_user), "engine": self.engine}
        return VendedToken.from_body(body, received_at=0.0)


@pytest.mark.parametrize(("engine", "module", "extra"), [("postgres", "psycopg", "psycopg"),
                                                         ("mariadb", "pymysql", "pymysql")])
def test_connect_without_the_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch, engine: str, module: str,
                                                    extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as when it is not installed
    with pytest.raises(MissingExtraError) as caught:
        connect(_Tokens(engine), "orders-prod", "orders_app")
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith(f"pip install 'rdsvend[{extra}]'")
    assert isinstance(caught.value, ImportError)  # code catching ImportError keeps working


def test_create_engine_without_sqlalchemy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'rdsvend\[sqlalchemy\]'$"):
        create_engine(_Tokens(), "orders-prod", "orders_app")


def test_invoke_payload_without_a_region_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(IdentityProofError) as caught:
        invoke_payload("billing-local", "billing_app", server_id="rdsvend-local.111122223333")
    assert str(caught.value).startswith("no AWS region: set AWS_DEFAULT_REGION")
