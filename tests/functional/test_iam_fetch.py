"""The fetching adapter and evaluate_rds_connect against moto (in-process): roles, users,
inline + attached managed + group policies, boundaries, OUs with SCPs, the management account."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.errors import IamFetchError, IamPolicyError
from chalicelib.iam.connect import evaluate_rds_connect
from chalicelib.iam.fetch import PrincipalPolicies, fetch_principal_policies, fetch_scp_chain, principal_ref
from chalicelib.iam.model import parse_policy
from chalicelib.iam.rdsdb import dbuser_arn

REGION = "us-east-1"
MGMT = "123456789012"
RID = "db-ABCDEFGHIJKLMNOPQRSTUVWXY1"
TRUST = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
})


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(resource: str, action: str = "rds-db:connect", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def _deny(resource: str, action: str = "rds-db:connect", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def _member_session(org: dict[str, Any], account_id: str) -> boto3.Session:
    """boto3 clients acting inside a member account (moto routes assumed-role credentials)."""
    sts = boto3.client("sts", region_name=REGION)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole", RoleSessionName="test-setup"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )


def _first_resources(fetched: PrincipalPolicies) -> list[str]:
    """The first Resource of every identity statement, sorted."""
    found = []
    for document in fetched.identity:
        for statement in document.statements:
            assert statement.resources is not None, f"{document.source}: a NotResource statement"
            found.append(statement.resources[0])
    return sorted(found)


@pytest.fixture
def aws(aws_env: pytest.MonkeyPatch) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def org(aws: None) -> dict[str, Any]:
    """root -> ou workloads -> ou prod -> member account; SCPs on every level."""
    client = boto3.client("organizations", region_name=REGION)
    client.create_organization(FeatureSet="ALL")
    root = client.list_roots()["Roots"][0]["Id"]
    client.enable_policy_type(RootId=root, PolicyType="SERVICE_CONTROL_POLICY")
    workloads = client.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
    prod = client.create_organizational_unit(ParentId=workloads, Name="prod")["OrganizationalUnit"]["Id"]
    status = client.create_account(Email="member@example.com", AccountName="member")["CreateAccountStatus"]
    member = status["AccountId"]
    client.move_account(AccountId=member, SourceParentId=root, DestinationParentId=prod)
    return {"client": client, "root": root, "workloads": workloads, "prod": prod, "member": member}


def _scp(client: Any, name: str, content: str, *targets: str) -> str:
    pid: str = client.create_policy(
        Name=name, Description=name, Type="SERVICE_CONTROL_POLICY", Content=content
    )["Policy"]["PolicySummary"]["Id"]
    for target in targets:
        client.attach_policy(PolicyId=pid, TargetId=target)
    return pid


# --- principals ---------------------------------------------------------------------------


def test_role_inline_attached_managed_default_version_and_boundary(aws: None) -> None:
    iam = boto3.client("iam", region_name=REGION)
    boundary_arn = iam.create_policy(PolicyName="boundary", PolicyDocument=_doc(_allow("*", "rds-db:*")))["Policy"]["Arn"]
    iam.create_role(RoleName="signer", Path="/svc/", AssumeRolePolicyDocument=TRUST, PermissionsBoundary=boundary_arn,
                    Tags=[{"Key": "team", "Value": "orders"}])
    iam.put_role_policy(RoleName="signer", PolicyName="inline", PolicyDocument=_doc(_allow("arn:aws:rds-db:*:*:dbuser:db-A/*")))
    managed = iam.create_policy(PolicyName="managed", PolicyDocument=_doc(_allow("arn:aws:rds-db:*:*:dbuser:db-OLD/*")))["Policy"]["Arn"]
    iam.create_policy_version(PolicyArn=managed, PolicyDocument=_doc(_allow("arn:aws:rds-db:*:*:dbuser:db-NEW/*")), SetAsDefault=True)
    iam.attach_role_policy(RoleName="signer", PolicyArn=managed)

    fetched = fetch_principal_policies(iam, f"arn:aws:sts::{MGMT}:assumed-role/signer/session-1")

    assert fetched.kind == "role" and fetched.name == "signer"
    assert fetched.arn == f"arn:aws:iam::{MGMT}:role/svc/signer"
    resources = _first_resources(fetched)
    assert resources == ["arn:aws:rds-db:*:*:dbuser:db-A/*", "arn:aws:rds-db:*:*:dbuser:db-NEW/*"]
    assert fetched.boundary is not None and fetched.boundary.source == boundary_arn
    assert fetched.tags == {"team": "orders"}
    sources = {d.source for d in fetched.identity}
    assert managed in sources and any("inline policy 'inline'" in s for s in sources)


def test_user_with_group_policies(aws: None) -> None:
    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName="alice")
    iam.put_user_policy(UserName="alice", PolicyName="own", PolicyDocument=_doc(_allow("arn:aws:rds-db:*:*:dbuser:db-U/*")))
    iam.create_group(GroupName="dbas")
    iam.add_user_to_group(GroupName="dbas", UserName="alice")
    iam.put_group_policy(GroupName="dbas", PolicyName="grp", PolicyDocument=_doc(_allow("arn:aws:rds-db:*:*:dbuser:db-G/*")))
    gm = iam.create_policy(PolicyName="gm", PolicyDocument=_doc(_allow("arn:aws:rds-db:*:*:dbuser:db-GM/*")))["Policy"]["Arn"]
    iam.attach_group_policy(GroupName="dbas", PolicyArn=gm)

    fetched = fetch_principal_policies(iam, f"arn:aws:iam::{MGMT}:user/alice")

    resources = _first_resources(fetched)
    assert resources == [f"arn:aws:rds-db:*:*:dbuser:{r}/*" for r in ("db-G", "db-GM", "db-U")]
    assert fetched.boundary is None and fetched.kind == "user"


def test_missing_role_is_a_fetch_error_not_a_denial(aws: None) -> None:
    iam = boto3.client("iam", region_name=REGION)
    with pytest.raises(IamFetchError) as info:
        fetch_principal_policies(iam, f"arn:aws:iam::{MGMT}:role/nope")
    assert info.value.code == "NoSuchEntity"


def test_malformed_stored_scp_is_a_policy_error(org: dict[str, Any]) -> None:
    # Organizations stores what it is given; the evaluator must refuse, not guess.
    bad = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Permit", "Action": "*", "Resource": "*"}]})
    _scp(org["client"], "weird", bad, org["prod"])
    with pytest.raises(IamPolicyError, match="'Effect' must be") as info:
        fetch_scp_chain(org["client"], org["member"])
    assert "weird" in str(info.value)


@pytest.mark.parametrize("arn", ["arn:aws:iam::123:role/x", "arn:aws:s3:::bucket", "arn:aws:sts::123456789012:assumed-role/only"])
def test_principal_ref_rejects_non_principals(arn: str) -> None:
    with pytest.raises(IamFetchError):
        principal_ref(arn)


# --- SCP chain ----------------------------------------------------------------------------


def test_scp_chain_root_first_with_every_level(org: dict[str, Any]) -> None:
    client = org["client"]
    _scp(client, "ou-deny", _doc(_deny("*", "s3:*")), org["workloads"])
    _scp(client, "prod-allow", _doc(_allow("*", "*")), org["prod"], org["member"])

    chain = fetch_scp_chain(client, org["member"])

    assert chain is not None and chain.management_account is False
    assert chain.level_ids == (org["root"], org["workloads"], org["prod"], org["member"])
    names = [[d.source.split("'")[1] for d in level] for level in chain.levels]
    # FullAWSAccess is attached to the root (and, by moto, to new OUs and accounts).
    assert names[0] == ["FullAWSAccess"]
    assert "ou-deny" in names[1]
    assert "prod-allow" in names[2] and "prod-allow" in names[3]


def test_management_account_is_flagged(org: dict[str, Any]) -> None:
    chain = fetch_scp_chain(org["client"], MGMT)
    assert chain is not None and chain.management_account is True
    assert chain.level_ids == (org["root"], MGMT)


def test_no_organization_means_no_scps(aws: None) -> None:
    client = boto3.client("organizations", region_name=REGION)
    assert fetch_scp_chain(client, MGMT) is None


def test_unknown_account_is_a_fetch_error(org: dict[str, Any]) -> None:
    with pytest.raises(IamFetchError):
        fetch_scp_chain(org["client"], "999999999999")


# --- evaluate_rds_connect -----------------------------------------------------------------


def _member_signer(org: dict[str, Any], policy_resource: str, boundary: str | None = None) -> Any:
    session = _member_session(org, org["member"])
    iam = session.client("iam")
    kwargs: dict[str, str] = {}
    if boundary is not None:
        kwargs["PermissionsBoundary"] = iam.create_policy(PolicyName="b", PolicyDocument=boundary)["Policy"]["Arn"]
    iam.create_role(RoleName="rdsvend-signer", AssumeRolePolicyDocument=TRUST, **kwargs)
    iam.put_role_policy(RoleName="rdsvend-signer", PolicyName="connect", PolicyDocument=_doc(_allow(policy_resource)))
    return iam


def test_connect_allowed_through_every_layer(org: dict[str, Any]) -> None:
    arn = dbuser_arn(REGION, org["member"], RID, "orders_app")
    iam = _member_signer(org, arn)
    verdict = evaluate_rds_connect(
        f"arn:aws:sts::{org['member']}:assumed-role/rdsvend-signer/canary", arn,
        iam_client=iam, org_client=org["client"], account_id=org["member"],
    )
    assert verdict.allowed and verdict.identity_allows and verdict.scp_allows
    assert verdict.blocked_by is None and verdict.flags == ()


def test_connect_blocked_by_an_ou_scp_names_the_scp_layer(org: dict[str, Any]) -> None:
    _scp(org["client"], "no-rds-db", _doc(_deny("*", "rds-db:*")), org["workloads"])
    arn = dbuser_arn(REGION, org["member"], RID, "orders_app")
    iam = _member_signer(org, arn)
    verdict = evaluate_rds_connect(
        f"arn:aws:iam::{org['member']}:role/rdsvend-signer", arn,
        iam_client=iam, org_client=org["client"], account_id=org["member"],
    )
    assert not verdict.allowed and verdict.identity_allows and not verdict.scp_allows
    assert verdict.blocked_by == "scp"
    assert verdict.scp is not None and verdict.scp.policy is not None
    assert verdict.scp.decision == "explicitDeny" and "no-rds-db" in verdict.scp.policy


def test_connect_scp_on_org_id_uses_the_principals_org(org: dict[str, Any]) -> None:
    org_id = org["client"].describe_organization()["Organization"]["Id"]
    scp = _doc(_deny("*", "rds-db:connect", Condition={"StringNotEquals": {"aws:PrincipalOrgID": org_id}}))
    _scp(org["client"], "org-only", scp, org["prod"])
    arn = dbuser_arn(REGION, org["member"], RID, "orders_app")
    iam = _member_signer(org, arn)
    verdict = evaluate_rds_connect(
        f"arn:aws:iam::{org['member']}:role/rdsvend-signer", arn,
        iam_client=iam, org_client=org["client"], account_id=org["member"],
    )
    assert verdict.allowed


def test_connect_scp_on_a_key_connect_never_carries_is_flagged(org: dict[str, Any]) -> None:
    scp = _doc(_deny("*", "rds-db:connect", Condition={"StringNotEquals": {"rds:DatabaseEngine": "postgres"}}))
    _scp(org["client"], "engine-only", scp, org["prod"])
    arn = dbuser_arn(REGION, org["member"], RID, "orders_app")
    iam = _member_signer(org, arn)
    verdict = evaluate_rds_connect(
        f"arn:aws:iam::{org['member']}:role/rdsvend-signer", arn,
        iam_client=iam, org_client=org["client"], account_id=org["member"],
    )
    # The key is never in the request, so StringNotEquals is true and the deny always applies.
    assert verdict.blocked_by == "scp"
    assert [f.kind for f in verdict.flags] == ["condition-key"]
    assert "rds:DatabaseEngine" in verdict.flags[0].message


def test_connect_blocked_by_boundary_and_name_shaped_arn_flagged(org: dict[str, Any]) -> None:
    arn = dbuser_arn(REGION, org["member"], "orders-prod", "orders_app")
    iam = _member_signer(org, arn, boundary=_doc(_allow("*", "s3:*")))
    verdict = evaluate_rds_connect(
        f"arn:aws:iam::{org['member']}:role/rdsvend-signer", arn,
        iam_client=iam, org_client=org["client"], account_id=org["member"],
    )
    assert verdict.blocked_by == "boundary" and verdict.scp_allows
    assert any(f.kind == "resource-name" and "orders-prod" in f.message for f in verdict.flags)


def test_management_account_ignores_denying_scps(org: dict[str, Any]) -> None:
    _scp(org["client"], "deny-all", _doc(_deny("*", "*")), org["root"])
    iam = boto3.client("iam", region_name=REGION)
    arn = dbuser_arn(REGION, MGMT, RID, "orders_app")
    iam.create_role(RoleName="signer", AssumeRolePolicyDocument=TRUST)
    iam.put_role_policy(RoleName="signer", PolicyName="c", PolicyDocument=_doc(_allow(arn)))
    verdict = evaluate_rds_connect(
        f"arn:aws:iam::{MGMT}:role/signer", arn, iam_client=iam, org_client=org["client"], account_id=MGMT,
    )
    assert verdict.allowed and verdict.management_account


def test_session_policy_and_principal_tag_variable(aws: None) -> None:
    iam = boto3.client("iam", region_name=REGION)
    iam.create_role(RoleName="signer", AssumeRolePolicyDocument=TRUST, Tags=[{"Key": "dbuser", "Value": "orders_app"}])
    pattern = f"arn:aws:rds-db:{REGION}:{MGMT}:dbuser:{RID}/${{aws:PrincipalTag/dbuser}}"
    iam.put_role_policy(RoleName="signer", PolicyName="c", PolicyDocument=_doc(_allow(pattern)))
    principal = f"arn:aws:sts::{MGMT}:assumed-role/signer/s"
    allowed = evaluate_rds_connect(principal, dbuser_arn(REGION, MGMT, RID, "orders_app"),
                                   iam_client=iam, org_client=None, account_id=MGMT)
    other = evaluate_rds_connect(principal, dbuser_arn(REGION, MGMT, RID, "orders_owner"),
                                 iam_client=iam, org_client=None, account_id=MGMT)
    session = parse_policy(_doc(_allow("*", "s3:*")), "session")
    narrowed = evaluate_rds_connect(principal, dbuser_arn(REGION, MGMT, RID, "orders_app"),
                                    iam_client=iam, org_client=None, account_id=MGMT, session_policy=session)
    assert allowed.allowed and allowed.scp is None
    assert not other.allowed and other.blocked_by == "identity"
    assert not narrowed.allowed and narrowed.blocked_by == "session"
