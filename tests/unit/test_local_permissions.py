"""How the local STS reads a role's trust policy (devtools.local.permissions.trust_allows)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.local.permissions import trust_allows

USER = "arn:aws:iam::222222222222:user/rdsvend-operator"
SESSION = "arn:aws:sts::222222222222:assumed-role/rdsvend-function/rdsvend-local-function"


def trust(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal: str | dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra}


@pytest.mark.parametrize("document, caller, expected", [
    (trust(allow({"AWS": USER})), USER, "principal"),
    (trust(allow({"AWS": [USER, "arn:aws:iam::222222222222:role/other"]})), USER, "principal"),
    (trust(allow({"AWS": "arn:aws:iam::222222222222:role/rdsvend-function"})), SESSION, "principal"),
    (trust(allow({"AWS": "arn:aws:iam::222222222222:root"})), USER, "account"),
    (trust(allow({"AWS": "222222222222"})), SESSION, "account"),
    (trust(allow("*")), USER, "account"),
    (trust(allow({"AWS": "arn:aws:iam::333333333333:root"})), USER, None),
    (trust(allow({"Service": "lambda.amazonaws.com"})), SESSION, None),
    (trust(allow({"AWS": USER}, Condition={"StringEquals": {"sts:ExternalId": "x"}})), USER, None),
    (trust(allow({"AWS": USER}), {"Effect": "Deny", "Principal": {"AWS": USER}, "Action": "sts:*"}), USER, None),
    (trust({"Effect": "Allow", "Principal": {"AWS": USER}, "Action": "sts:TagSession"}), USER, None),
    (trust(allow({"AWS": "arn:aws:iam::222222222222:root"}), allow({"AWS": USER})), USER, "principal"),
])
def test_trust_policy_names_the_caller_its_account_or_nobody(document: str, caller: str, expected: str | None) -> None:
    assert trust_allows(document, caller, "222222222222") == expected
