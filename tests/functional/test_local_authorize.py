"""How the local AWS decides (devtools.local.authorize.Decider) over moto's state: identity,
boundary, session and SCP layers, resource policies same-account and cross-account, role trust."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.local.actions import Ask
from devtools.local.authorize import Decider, Denial
from devtools.local.moto_state import Principal

A = "111111111111"  # moto's default account is not used: every client names its account
B = "222222222222"
REGION = "us-east-1"


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action: str, resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def _client(service: str, account: str) -> Any:
    client = boto3.client(service, region_name=REGION, aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                          aws_secret_access_key="x")
    client.meta.events.register("before-sign", lambda request, **_: request.headers.__setitem__(
        "x-moto-account-id", account))
    return client


def _user(account: str, name: str, *statements: dict[str, Any]) -> Principal:
    iam = _client("iam", account)
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=_doc(*statements))
    return Principal(f"arn:aws:iam::{account}:user/{name}", account)


def _decide(principal: Principal, action: str, resource: str, signing: str, decider: Decider | None = None,
            key: str | None = None) -> Denial | None:
    ask = Ask(((action, resource),), {"aws:requestedregion": (REGION,)})
    return (decider or Decider()).decide(principal, ask, access_key_id=key, region=REGION, signing_name=signing)


def _denied(principal: Principal, action: str, resource: str, signing: str, key: str | None = None) -> Denial:
    denial = _decide(principal, action, resource, signing, key=key)
    assert denial is not None, f"{action} on {resource} was allowed"
    return denial


def _secret(account: str, policy: str | None = None) -> str:
    sm = _client("secretsmanager", account)
    arn: str = sm.create_secret(Name="s", SecretString="v")["ARN"]
    if policy is not None:
        sm.put_resource_policy(SecretId=arn, ResourcePolicy=policy)
    return arn


def test_identity_allows_and_no_grant_is_an_identity_denial(aws: None) -> None:
    granted = _user(A, "granted", _allow("secretsmanager:GetSecretValue"))
    bare = _user(A, "bare")
    arn = _secret(A)
    assert _decide(granted, "secretsmanager:GetSecretValue", arn, "secretsmanager") is None
    denial = _denied(bare, "secretsmanager:GetSecretValue", arn, "secretsmanager")
    assert (denial.layer, denial.explicit) == ("identity", False)
    assert denial.message().endswith("because no identity-based policy allows the secretsmanager:GetSecretValue action")


def test_a_same_account_resource_policy_grant_needs_no_identity_grant(aws: None) -> None:
    bare = _user(A, "bare")
    arn = _secret(A, _doc({"Effect": "Allow", "Principal": {"AWS": bare.arn}, "Action": "secretsmanager:GetSecretValue",
                           "Resource": "*"}))
    assert _decide(bare, "secretsmanager:GetSecretValue", arn, "secretsmanager") is None


def test_cross_account_needs_both_the_identity_and_the_resource_policy(aws: None) -> None:
    outsider = _user(B, "outsider", _allow("secretsmanager:GetSecretValue"))
    unnamed = _secret(A)
    denial = _denied(outsider, "secretsmanager:GetSecretValue", unnamed, "secretsmanager")
    assert denial.layer == "resource" and "no resource-based policy" in denial.detail
    sm = _client("secretsmanager", A)
    named = sm.create_secret(Name="shared", SecretString="v")["ARN"]
    sm.put_resource_policy(SecretId=named, ResourcePolicy=_doc({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"}, "Action": "secretsmanager:GetSecretValue",
        "Resource": "*"}))
    assert _decide(outsider, "secretsmanager:GetSecretValue", named, "secretsmanager") is None
    nobody = _user(B, "nobody")
    assert _denied(nobody, "secretsmanager:GetSecretValue", named, "secretsmanager").layer == "identity"


def test_an_explicit_deny_in_a_resource_policy_beats_an_identity_allow(aws: None) -> None:
    user = _user(A, "u", _allow("secretsmanager:GetSecretValue"))
    arn = _secret(A, _doc({"Effect": "Deny", "Principal": "*", "Action": "secretsmanager:*", "Resource": "*"}))
    denial = _denied(user, "secretsmanager:GetSecretValue", arn, "secretsmanager")
    assert (denial.layer, denial.explicit) == ("resource", True)
    assert denial.message().endswith("with an explicit deny in a resource-based policy")


def _role(account: str, name: str, principal: str | dict[str, Any], *statements: dict[str, Any]) -> str:
    iam = _client("iam", account)
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_doc(
        {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}))["Role"]["Arn"]
    if statements:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=_doc(*statements))
    return arn


def test_assume_role_follows_the_trust_policy(aws: None) -> None:
    named = _user(A, "named")
    role = _role(A, "r", {"AWS": named.arn})
    assert _decide(named, "sts:AssumeRole", role, "sts") is None  # named exactly, same account: trust alone
    other = _user(A, "other", _allow("sts:AssumeRole"))
    denial = _denied(other, "sts:AssumeRole", role, "sts")
    assert denial.layer == "resource" and "trust policy" in denial.detail
    assert denial.message() == f"User: {other.arn} is not authorized to perform: sts:AssumeRole on resource: {role}"
    missing = _denied(named, "sts:AssumeRole", f"arn:aws:iam::{A}:role/absent", "sts")
    assert missing.layer == "resource" and "does not exist" in missing.detail


def test_a_trusted_account_still_needs_the_callers_own_permission(aws: None) -> None:
    role = _role(A, "reader", {"AWS": f"arn:aws:iam::{B}:root"})
    allowed = _user(B, "allowed", _allow("sts:AssumeRole", role))
    bare = _user(B, "bare")
    assert _decide(allowed, "sts:AssumeRole", role, "sts") is None
    assert _denied(bare, "sts:AssumeRole", role, "sts").layer == "identity"


def test_the_management_root_may_assume_only_what_trusts_it(aws: None) -> None:
    root = Principal(f"arn:aws:iam::{B}:root", B, root=True)
    trusting = _role(A, "admin", {"AWS": f"arn:aws:iam::{B}:root"})
    other = _role(A, "lambda-only", {"Service": "lambda.amazonaws.com"})
    assert _decide(root, "sts:AssumeRole", trusting, "sts") is None
    assert _decide(root, "iam:DeleteRole", other, "iam") is None  # no IAM policy limits the root
    assert _denied(root, "sts:AssumeRole", other, "sts").layer == "resource"


def test_a_session_policy_narrows_a_role_session(aws: None) -> None:
    role = _role(A, "wide", {"AWS": f"arn:aws:iam::{A}:root"}, _allow("secretsmanager:*"))
    sts = _client("sts", A)
    creds = sts.assume_role(RoleArn=role, RoleSessionName="narrow",
                            Policy=_doc(_allow("secretsmanager:DescribeSecret")))["Credentials"]
    session = Principal(f"arn:aws:sts::{A}:assumed-role/wide/narrow", A)
    key = creds["AccessKeyId"]
    arn = _secret(A)
    assert _decide(session, "secretsmanager:DescribeSecret", arn, "secretsmanager", key=key) is None
    assert _denied(session, "secretsmanager:GetSecretValue", arn, "secretsmanager", key=key).layer == "session"


def test_scps_bind_member_accounts(aws: None) -> None:
    orgs = _client("organizations", A)
    orgs.create_organization(FeatureSet="ALL")
    member = orgs.create_account(AccountName="m", Email="m@x.test")["CreateAccountStatus"]["AccountId"]
    deny = orgs.create_policy(Name="no-secrets", Description="d", Type="SERVICE_CONTROL_POLICY", Content=_doc(
        {"Effect": "Deny", "Action": "secretsmanager:*", "Resource": "*"}))["Policy"]["PolicySummary"]["Id"]
    orgs.attach_policy(PolicyId=deny, TargetId=member)
    user = _user(member, "u", _allow("secretsmanager:*"))
    denial = _denied(user, "secretsmanager:ListSecrets", "*", "secretsmanager")
    assert (denial.layer, denial.explicit) == ("scp", True) and deny in denial.detail
    manager = _user(A, "manager", _allow("secretsmanager:*"))
    assert _decide(manager, "secretsmanager:ListSecrets", "*", "secretsmanager") is None  # management account


def test_a_principal_that_no_longer_exists_is_refused(aws: None) -> None:
    ghost = Principal(f"arn:aws:iam::{A}:user/ghost", A)
    assert _denied(ghost, "secretsmanager:ListSecrets", "*", "secretsmanager").detail == "the principal does not exist"


def test_policies_are_read_again_after_a_change(aws: None) -> None:
    user = _user(A, "u")
    decider = Decider()
    assert _decide(user, "secretsmanager:ListSecrets", "*", "secretsmanager", decider) is not None
    _client("iam", A).put_user_policy(UserName="u", PolicyName="p", PolicyDocument=_doc(_allow("secretsmanager:*")))
    assert _decide(user, "secretsmanager:ListSecrets", "*", "secretsmanager", decider) is not None  # cached
    decider.changed()  # what the Enforcer does around every IAM or Organizations write
    assert _decide(user, "secretsmanager:ListSecrets", "*", "secretsmanager", decider) is None
