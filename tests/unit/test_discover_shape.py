"""The shapes of ``rdsvend discover``'s output (pure)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import yaml

from devtools.discover.shape import AccountResult, Discovery, FoundDatabase, to_json, to_table, to_yaml


def db(account: str, identifier: str, engine: str = "postgres", **kw: Any) -> FoundDatabase:
    base = FoundDatabase(account=account, region="eu-west-1", kind="instance", identifier=identifier, engine=engine,
                         host=f"{identifier}.example", port=5432, resource_id="db-ABC", iam_auth=True)
    return replace(base, **kw)


def test_same_identifier_in_two_accounts_gets_two_names() -> None:
    found = Discovery(accounts=(AccountResult("111111111111", "ok"), AccountResult("222222222222", "ok")),
                      databases=(db("111111111111", "Orders_DB"), db("222222222222", "orders-db"),
                                 db("222222222222", "ORDERS-DB", region="us-east-1")),
                      default_role_name="rdsvend-reader")
    block = yaml.safe_load(to_yaml(found))["databases"]
    assert list(block) == ["orders-db", "orders-db-2222", "orders-db-2222-2"]
    assert "reader_role" not in block["orders-db"]  # the policy's defaults already name the role


def test_no_databases_is_still_a_mapping_and_errors_are_comments() -> None:
    found = Discovery(accounts=(AccountResult("111111111111", "error", "could not assume: AccessDenied"),),
                      databases=())
    text = to_yaml(found)
    assert yaml.safe_load(text) == {"databases": {}}
    assert "# account 111111111111 could not be read: could not assume: AccessDenied" in text
    assert not found.ok


def test_json_has_exactly_the_documented_fields() -> None:
    found = Discovery(accounts=(AccountResult("111111111111", "ok"),),
                      databases=(db("111111111111", "a", flags=("kerberos_domain",)),))
    answer = json.loads(to_json(found))
    assert answer["accounts"] == [{"account": "111111111111", "status": "ok", "error": None}]
    assert set(answer["databases"][0]) == {"account", "region", "kind", "identifier", "engine", "host", "port",
                                           "resource_id", "iam_auth", "flags"}


def test_table_marks_unknowns() -> None:
    found = Discovery(accounts=(AccountResult("111111111111", "ok"),),
                      databases=(db("111111111111", "a", host=None, resource_id=None, iam_auth=None),))
    row = to_table(found).splitlines()[1].split()
    assert row == ["111111111111", "eu-west-1", "instance", "a", "postgres", "-", "-", "?", "-"]
