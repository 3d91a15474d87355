"""Caller identity: canonical principals, sessions kept for audit, nothing accepted by accident."""
from __future__ import annotations

import pytest

from chalicelib.errors import UnauthenticatedError
from chalicelib.identity import identity_from_arn, identity_from_request_context


def test_assumed_role_session_becomes_its_role() -> None:
    ident = identity_from_arn("arn:aws:sts::111122223333:assumed-role/orders-api-blue/i-0abc",
                              account="111122223333", org_id="o-abc123def4", source_ip="10.1.2.3")
    assert ident.principal == "arn:aws:iam::111122223333:role/orders-api-blue"
    assert ident.kind == "assumed-role" and ident.session == "i-0abc"
    assert ident.arn.startswith("arn:aws:sts::") and ident.org_id == "o-abc123def4"
    assert ident.to_whoami() == {
        "principal": "arn:aws:iam::111122223333:role/orders-api-blue",
        "arn": "arn:aws:sts::111122223333:assumed-role/orders-api-blue/i-0abc",
        "account": "111122223333", "org_id": "o-abc123def4", "session": "i-0abc",
    }


@pytest.mark.parametrize(
    "arn, kind, principal",
    [
        ("arn:aws:iam::111122223333:user/alice", "user", "arn:aws:iam::111122223333:user/alice"),
        ("arn:aws:iam::111122223333:user/team/alice", "user", "arn:aws:iam::111122223333:user/team/alice"),
        ("arn:aws:iam::111122223333:role/svc/orders", "role", "arn:aws:iam::111122223333:role/svc/orders"),
        ("arn:aws:iam::111122223333:root", "root", "arn:aws:iam::111122223333:root"),
        ("arn:aws:sts::111122223333:federated-user/bob", "federated-user", "arn:aws:sts::111122223333:federated-user/bob"),
        ("arn:aws-us-gov:sts::111122223333:assumed-role/r/s", "assumed-role", "arn:aws-us-gov:iam::111122223333:role/r"),
    ],
)
def test_kinds(arn: str, kind: str, principal: str) -> None:
    ident = identity_from_arn(arn)
    assert (ident.kind, ident.principal) == (kind, principal)


@pytest.mark.parametrize(
    "arn",
    [None, "", 42, "not-an-arn", "arn:aws:s3:::bucket", "arn:aws:iam::1111:user/x",
     "arn:aws:sts::111122223333:assumed-role/only-role", "arn:aws:iam::111122223333:group/admins",
     "arn:aws:iam::111122223333:user/" + "a" * 3000, "arn:aws:iam::111122223333:user/x\nforged"],
)
def test_untrusted_arns_are_unauthenticated(arn: int | str | None) -> None:
    with pytest.raises(UnauthenticatedError):
        identity_from_arn(arn)


def test_account_mismatch_is_unauthenticated() -> None:
    with pytest.raises(UnauthenticatedError):
        identity_from_arn("arn:aws:iam::111122223333:user/alice", account="444455556666")


def test_request_context_without_user_arn_is_unauthenticated() -> None:
    for ctx in (None, {}, {"identity": None}, {"identity": {"accountId": "111122223333"}}):
        with pytest.raises(UnauthenticatedError):
            identity_from_request_context(ctx)


def test_bad_source_ip_is_dropped_not_trusted() -> None:
    ident = identity_from_request_context({"identity": {"userArn": "arn:aws:iam::111122223333:user/a",
                                                        "sourceIp": "10.0.0.1; DROP"}})
    assert ident.source_ip is None
