"""The local AWS authorizes every request as AWS does (devtools.local.authorize): refusals in
each service's own AccessDenied shape and words, logged with the layer that decided.

A probe user in the workloads account (333333333333) gets policies, a boundary and a secret
with a resource policy per test; everything is put back at the end of the module.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devtools.local.aws import AccountSessions
from devtools.local.denials import Denial
from devtools.local.stack import LocalStack

pytestmark = pytest.mark.e2e

WORKLOADS = "333333333333"
SERVICE = "222222222222"
PROBE = "enforce-probe"
PROBE_ARN = f"arn:aws:iam::{WORKLOADS}:user/{PROBE}"
SIGNER = f"arn:aws:iam::{SERVICE}:role/rdsvend-signer"
_ONE_TRY = Config(retries={"max_attempts": 1})


def _client(stack: LocalStack, keys: dict[str, str], service: str, **kwargs: Any) -> Any:
    session = boto3.session.Session(aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
                                    aws_session_token=keys.get("SessionToken"), region_name=stack.info.region)
    return session.client(service, endpoint_url=stack.moto_url, config=_ONE_TRY, **kwargs)


def _refusal(call: Callable[..., object], *args: Any, **kwargs: Any) -> Mapping[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response


def _last_denial(stack: LocalStack, action: str) -> Denial:
    found: list[Denial] = [d for d in stack.denials() if d.action == action]
    assert found, f"no denial of {action} was logged"
    return found[-1]


#: (service, account=the workloads account) -> an administrator's client there
Admin = Callable[..., Any]


@pytest.fixture(scope="module")
def admin(local_stack: LocalStack) -> Admin:
    """Clients acting in an account with its OrganizationAccountAccessRole (administrator)."""
    info = local_stack.info
    sessions = AccountSessions(info.moto_url, info.region, info.seeded.management_account)

    def client(service: str, account: str = WORKLOADS) -> Any:
        return sessions.client(service, account)

    return client


@pytest.fixture(scope="module")
def probe(local_stack: LocalStack, admin: Admin) -> Iterator[dict[str, str]]:
    iam = admin("iam")
    iam.create_user(UserName=PROBE)
    keys = iam.create_access_key(UserName=PROBE)["AccessKey"]
    try:
        yield keys
    finally:
        for name in iam.list_user_policies(UserName=PROBE)["PolicyNames"]:
            iam.delete_user_policy(UserName=PROBE, PolicyName=name)
        iam.delete_access_key(UserName=PROBE, AccessKeyId=keys["AccessKeyId"])
        iam.delete_user(UserName=PROBE)


def _grant(admin: Admin, name: str, actions: str | list[str], resource: str = "*") -> None:
    admin("iam").put_user_policy(UserName=PROBE, PolicyName=name, PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}))


# -- no grant: AWS's words, per protocol -------------------------------------------------------------

def test_a_caller_with_no_grant_is_refused_in_the_query_shape_with_aws_words(local_stack: LocalStack,
                                                                             probe: dict[str, str]) -> None:
    iam = _client(local_stack, probe, "iam")
    response = _refusal(iam.get_user)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == "AccessDenied"
    assert response["Error"]["Message"] == (
        f"User: {PROBE_ARN} is not authorized to perform: iam:GetUser on resource: {PROBE_ARN} "
        "because no identity-based policy allows the iam:GetUser action")
    denial = _last_denial(local_stack, "iam:GetUser")
    assert (denial.principal, denial.resource, denial.layer) == (PROBE_ARN, PROBE_ARN, "identity")


def test_a_caller_with_no_grant_is_refused_in_the_json_shape_with_aws_words(local_stack: LocalStack,
                                                                            probe: dict[str, str]) -> None:
    sm = _client(local_stack, probe, "secretsmanager")
    response = _refusal(sm.list_secrets)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"] == (
        f"User: {PROBE_ARN} is not authorized to perform: secretsmanager:ListSecrets on resource: * "
        "because no identity-based policy allows the secretsmanager:ListSecrets action")
    assert _last_denial(local_stack, "secretsmanager:ListSecrets").layer == "identity"


def test_an_allowed_call_passes(local_stack: LocalStack, probe: dict[str, str], admin: Admin) -> None:
    sm = _client(local_stack, probe, "secretsmanager")
    _grant(admin, "random", "secretsmanager:GetRandomPassword")
    try:
        assert len(sm.get_random_password(PasswordLength=20)["RandomPassword"]) == 20
    finally:
        admin("iam").delete_user_policy(UserName=PROBE, PolicyName="random")
    assert _refusal(sm.get_random_password)["Error"]["Code"] == "AccessDeniedException"  # the grant is gone


def test_an_unknown_key_and_a_bad_signature_get_the_services_own_errors(local_stack: LocalStack,
                                                                        probe: dict[str, str]) -> None:
    unknown = {"AccessKeyId": "AKIA" + "Q" * 16, "SecretAccessKey": "x"}
    assert _refusal(_client(local_stack, unknown, "iam").get_user)["Error"]["Code"] == "InvalidClientTokenId"
    assert _refusal(_client(local_stack, unknown, "secretsmanager").list_secrets)["Error"]["Code"] == (
        "UnrecognizedClientException")
    wrong = {**probe, "SecretAccessKey": "not-the-secret"}
    assert _refusal(_client(local_stack, wrong, "iam").get_user)["Error"]["Code"] == "SignatureDoesNotMatch"
    assert _refusal(_client(local_stack, wrong, "logs").describe_log_groups)["Error"]["Code"] == (
        "InvalidSignatureException")


# -- each layer named -------------------------------------------------------------------------------

def test_an_scp_deny_is_named_in_the_answer_and_the_log(local_stack: LocalStack, probe: dict[str, str],
                                                        admin: Admin) -> None:
    orgs = admin("organizations", local_stack.info.seeded.management_account)
    _grant(admin, "random", "secretsmanager:GetRandomPassword")
    scp = orgs.create_policy(Name=f"deny-probe-{uuid.uuid4().hex[:6]}", Description="test", Type="SERVICE_CONTROL_POLICY",
                             Content=json.dumps({"Version": "2012-10-17", "Statement": [{
                                 "Effect": "Deny", "Action": "secretsmanager:GetRandomPassword", "Resource": "*",
                                 "Condition": {"StringEquals": {"aws:PrincipalArn": PROBE_ARN}}}]}))
    scp_id = scp["Policy"]["PolicySummary"]["Id"]
    orgs.attach_policy(PolicyId=scp_id, TargetId=WORKLOADS)
    try:
        response = _refusal(_client(local_stack, probe, "secretsmanager").get_random_password)
    finally:
        orgs.detach_policy(PolicyId=scp_id, TargetId=WORKLOADS)
        orgs.delete_policy(PolicyId=scp_id)
        admin("iam").delete_user_policy(UserName=PROBE, PolicyName="random")
    assert response["Error"]["Message"].endswith(
        "secretsmanager:GetRandomPassword on resource: * with an explicit deny in a service control policy")
    denial = _last_denial(local_stack, "secretsmanager:GetRandomPassword")
    assert denial.layer == "scp" and denial.explicit and scp_id in denial.detail


def test_a_permissions_boundary_is_named_in_the_answer_and_the_log(local_stack: LocalStack, probe: dict[str, str],
                                                                   admin: Admin) -> None:
    iam = admin("iam")
    suffix = uuid.uuid4().hex[:6]
    boundary = iam.create_policy(PolicyName=f"probe-boundary-{suffix}", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*"}]}))
    arn = boundary["Policy"]["Arn"]
    name = f"probe-bounded-{suffix}"
    role = iam.create_role(RoleName=name, PermissionsBoundary=arn, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": PROBE_ARN}}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="both", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
                                                "Action": ["iam:GetRole", "secretsmanager:GetRandomPassword"]}]}))
    try:
        creds = _client(local_stack, probe, "sts").assume_role(RoleArn=role, RoleSessionName="bounded")["Credentials"]
        assert _client(local_stack, creds, "iam").get_role(RoleName=name)["Role"]["Arn"] == role  # the boundary allows it
        response = _refusal(_client(local_stack, creds, "secretsmanager").get_random_password)
    finally:
        iam.delete_role_policy(RoleName=name, PolicyName="both")
        iam.delete_role(RoleName=name)
        iam.delete_policy(PolicyArn=arn)
    assert response["Error"]["Message"] == (
        f"User: arn:aws:sts::{WORKLOADS}:assumed-role/{name}/bounded is not authorized to perform: "
        "secretsmanager:GetRandomPassword on resource: * "
        "because no permissions boundary allows the secretsmanager:GetRandomPassword action")
    assert _last_denial(local_stack, "secretsmanager:GetRandomPassword").layer == "boundary"


def test_a_secrets_resource_policy_deny_is_named_in_the_answer_and_the_log(local_stack: LocalStack,
                                                                           probe: dict[str, str], admin: Admin) -> None:
    sm = admin("secretsmanager")
    secret = sm.create_secret(Name=f"probe/{uuid.uuid4().hex[:8]}", SecretString="s3cret")["ARN"]
    sm.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": {"AWS": PROBE_ARN}, "Action": "secretsmanager:GetSecretValue",
        "Resource": "*"}]}))
    _grant(admin, "read", ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"])
    try:
        probe_sm = _client(local_stack, probe, "secretsmanager")
        assert probe_sm.describe_secret(SecretId=secret)["ARN"] == secret  # not denied by the policy
        response = _refusal(probe_sm.get_secret_value, SecretId=secret)
    finally:
        sm.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        admin("iam").delete_user_policy(UserName=PROBE, PolicyName="read")
    assert response["Error"]["Message"] == (
        f"User: {PROBE_ARN} is not authorized to perform: secretsmanager:GetSecretValue on resource: {secret} "
        "with an explicit deny in a resource-based policy")
    denial = _last_denial(local_stack, "secretsmanager:GetSecretValue")
    assert (denial.layer, denial.resource) == ("resource", secret)
    assert "s3cret" not in json.dumps(response) and "s3cret" not in denial.detail


def test_assume_role_needs_a_trust_that_admits_the_caller(local_stack: LocalStack, probe: dict[str, str],
                                                          admin: Admin) -> None:
    _grant(admin, "assume", "sts:AssumeRole")
    try:
        response = _refusal(_client(local_stack, probe, "sts").assume_role, RoleArn=SIGNER, RoleSessionName="probe")
    finally:
        admin("iam").delete_user_policy(UserName=PROBE, PolicyName="assume")
    assert response["Error"]["Code"] == "AccessDenied"
    assert response["Error"]["Message"] == (
        f"User: {PROBE_ARN} is not authorized to perform: sts:AssumeRole on resource: {SIGNER}")
    denial = _last_denial(local_stack, "sts:AssumeRole")
    assert denial.layer == "resource" and "trust policy" in denial.detail


def test_moto_alone_lets_anyone_assume_any_role_and_the_local_stack_does_not(local_stack: LocalStack,
                                                                             probe: dict[str, str],
                                                                             admin: Admin) -> None:
    """Pinned: moto answers this AssumeRole (its trust admits only the service); the local AWS refuses."""
    from moto import mock_aws

    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName=PROBE)
        key = iam.create_access_key(UserName=PROBE)["AccessKey"]
        role = iam.create_role(RoleName="locked", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                           aws_secret_access_key=key["SecretAccessKey"])
        assert sts.assume_role(RoleArn=role, RoleSessionName="xx")["Credentials"]["AccessKeyId"]
    execution = f"arn:aws:iam::{SERVICE}:role/rdsvend-function"  # trusts lambda.amazonaws.com only
    _grant(admin, "assume", "sts:AssumeRole")
    try:
        response = _refusal(_client(local_stack, probe, "sts").assume_role, RoleArn=execution, RoleSessionName="xx")
    finally:
        admin("iam").delete_user_policy(UserName=PROBE, PolicyName="assume")
    assert response["Error"]["Code"] == "AccessDenied"
    assert _last_denial(local_stack, "sts:AssumeRole").resource == execution


def test_a_cross_account_assume_role_needs_the_callers_own_permission(local_stack: LocalStack) -> None:
    """The operator is named in the signer's trust; its own policy must still allow it (it does),
    and the denied caller, not named, is refused."""
    info = local_stack.info
    operator = info.keys("operator")
    sts = boto3.session.Session(aws_access_key_id=operator.access_key_id,
                                aws_secret_access_key=operator.secret_access_key,
                                region_name=info.region).client("sts", endpoint_url=info.moto_url, config=_ONE_TRY)
    assert sts.assume_role(RoleArn=SIGNER, RoleSessionName="op")["AssumedRoleUser"]["Arn"].endswith("/op")


def test_an_action_the_local_stack_cannot_map_is_denied_and_logged(local_stack: LocalStack) -> None:
    info = local_stack.info
    operator = info.keys("operator")  # may read any IAM role, but nothing names a SAML provider here
    iam = boto3.session.Session(aws_access_key_id=operator.access_key_id,
                                aws_secret_access_key=operator.secret_access_key,
                                region_name=info.region).client("iam", endpoint_url=info.moto_url, config=_ONE_TRY)
    response = _refusal(iam.get_saml_provider, SAMLProviderArn=f"arn:aws:iam::{SERVICE}:saml-provider/corp")
    assert response["Error"]["Code"] == "AccessDenied"
    assert "iam:GetSAMLProvider" in response["Error"]["Message"]
    denial = _last_denial(local_stack, "iam:GetSAMLProvider")
    assert denial.layer == "unmapped" and "saml-provider" in denial.detail


def test_the_gateway_authorizes_execute_api_invoke(local_stack: LocalStack, probe: dict[str, str]) -> None:
    """A signed request from a principal of the organization with no execute-api:Invoke grant
    is refused by the gateway as API Gateway refuses it; the allowed caller passes."""
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=f"{local_stack.url}/v1/whoami")
    SigV4Auth(Credentials(probe["AccessKeyId"], probe["SecretAccessKey"]), "execute-api",
              local_stack.info.region).add_auth(request)
    assert request.url is not None
    answer = requests.get(request.url, headers=dict(request.headers.items()), timeout=10)
    assert answer.status_code == 403
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    method_arn = f"arn:aws:execute-api:us-east-1:{SERVICE}:rdsvendlcl/api/GET/v1/whoami"
    assert answer.json()["Message"] == (
        f"User: {PROBE_ARN} is not authorized to perform: execute-api:Invoke on resource: {method_arn} "
        "because no identity-based policy allows the execute-api:Invoke action")
    assert _last_denial(local_stack, "execute-api:Invoke").resource == method_arn
    assert local_stack.request("GET", "/v1/whoami")[0] == 200
