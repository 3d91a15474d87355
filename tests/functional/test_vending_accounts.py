"""Vending for a database in another account (moto, two accounts, through the Chalice app).

The service runs in moto's default account; the database, its signer role and its reader
role live in a member account. moto does not evaluate trust policies, so "a reader role
that cannot be assumed" is made real with moto's IAM enforcement instead: the service's
own identity policy does not allow ``sts:AssumeRole`` on that role, and moto refuses it.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count
from moto.core.models import DEFAULT_ACCOUNT_ID

import app as app_module
from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.rds import EndpointResolver
from chalicelib.errors import PolicyLoadError
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.routes.http import set_vending_service
from chalicelib.signer import TokenMinter
from chalicelib.signer.roles import StsRoleAssumer
from chalicelib.vending.pipeline import VendingService
from tests.support.aws import record_calls
from tests.support.events import load_event

SERVICE = DEFAULT_ACCOUNT_ID
MEMBER = "444455556666"
REGION = "eu-west-1"
SIGNER = f"arn:aws:iam::{MEMBER}:role/rdsvend-signer"
READER = f"arn:aws:iam::{MEMBER}:role/rdsvend-reader"
CALLER = f"arn:aws:sts::{SERVICE}:assumed-role/billing-api/i-1"


def policy(*extra: str, defaults: str = "") -> str:
    """The access policy: database ``billing`` in the member account, plus ``extra`` keys."""
    lines = ["version: 1", defaults,
             "databases:", "  billing:", "    engine: postgres", f"    region: {REGION}",
             "    instance: billing-prod", f"    signer_role: {SIGNER}",
             *(f"    {line}" for line in extra),
             "    users:", "      billing_app: {auth: iam}",
             "rules:", "  - id: billing", "    effect: allow",
             f'    principals: ["arn:aws:iam::{SERVICE}:role/billing-api"]',
             "    databases: [billing]", "    db_users: [billing_app]"]
    return "\n".join(lines) + "\n"


def member_session() -> boto3.Session:
    admin = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{MEMBER}:role/admin", RoleSessionName="setup")["Credentials"]
    return boto3.Session(aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"],
                         aws_session_token=admin["SessionToken"], region_name=REGION)


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    """Service account (moto's default) and a member account holding the database and roles."""
    with mock_aws():
        member = member_session()
        iam = member.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{SERVICE}:root"},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"]}]})
        for name, actions in (("rdsvend-signer", ["rds-db:connect"]), ("rdsvend-reader", ["rds:Describe*"])):
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
            iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        instance = member.client("rds").create_db_instance(
            DBInstanceIdentifier="billing-prod", Engine="postgres", DBInstanceClass="db.t3.micro",
            MasterUsername="root", MasterUserPassword="not-used-123", AllocatedStorage=20,
            EnableIAMDatabaseAuthentication=True)["DBInstance"]
        yield {"instance": instance}


class Recorder:
    """The production client factory over one boto3 session, counting the calls it makes
    (botocore's own event hooks) and keeping what AssumeRole was sent."""

    def __init__(self, session: boto3.Session | None = None) -> None:
        self.session = session or boto3.Session()
        self.calls: list[str] = []
        self.assumed: list[dict[str, Any]] = []
        self.secrets: list[str] = []  # what STS handed out: must never reach a log line
        self.session.events.register("before-call", self._count)
        self.session.events.register("after-call.sts.AssumeRole", self._keep_secrets)
        self.session.events.register("provide-client-params.sts.AssumeRole",
                                     lambda params, **_: self.assumed.append(dict(params)))
        self.factory = ClientFactory(session_factory=lambda: self.session)

    def _keep_secrets(self, parsed: dict[str, Any], **_: Any) -> None:
        creds = parsed.get("Credentials") or {}
        self.secrets += [creds[k] for k in ("SecretAccessKey", "SessionToken") if creds.get(k)]

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.append(f"{model.service_model.service_name}:{model.name}")

    def __call__(self, service: str, region: str | None = None) -> Any:
        return self.factory(service, region)


def rds_calls_anywhere(recorder: Recorder) -> list[str]:
    """RDS calls made with the service's own session or with any session boto3 creates."""
    return [c for c in recorder.calls if c.startswith("rds:")]


#: (policy text, recorder, service_account=, resolver_account=) -> (status, body, headers)
Vend = Callable[..., tuple[int, Any, dict[str, str]]]


@pytest.fixture
def vend() -> Vend:
    def run(policy_text: str, recorder: Recorder, *, service_account: str | None = SERVICE,
            resolver_account: str | None = None) -> tuple[int, Any, dict[str, str]]:
        loaded = load_policy_text(policy_text, "orgs.yaml", service_account=service_account)
        svc = VendingService(
            policy_source=StaticPolicySource(loaded),
            minter=TokenMinter(session=recorder.session, assume_role=StsRoleAssumer(recorder)),
            resolver=EndpointResolver(recorder, service_account=resolver_account))
        set_vending_service(svc)
        try:
            event = load_event("post_tokens")
            event["requestContext"]["identity"].update(userArn=CALLER, accountId=SERVICE, principalOrgId=None,
                                                       sourceIp="10.1.2.3")
            event["body"] = json.dumps({"database": "billing", "db_user": "billing_app"})
            answer = app_module.app(event, None)
            return answer["statusCode"], json.loads(answer["body"]), answer["headers"]
        finally:
            set_vending_service(None)
    return run


def test_foreign_database_is_resolved_through_its_reader_role(world: dict[str, Any], vend: Vend,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    describes = record_calls(monkeypatch, "rds")
    recorder = Recorder()
    status, body, _ = vend(policy(f"reader_role: {READER}"), recorder)
    assert status == 200, body
    endpoint = world["instance"]["Endpoint"]
    assert (body["host"], body["port"]) == (endpoint["Address"], endpoint["Port"])
    roles = [a["RoleArn"] for a in recorder.assumed]
    assert roles[0] == READER and SIGNER in roles
    signer_call = next(a for a in recorder.assumed if a["RoleArn"] == SIGNER)
    dbuser = f"arn:aws:rds-db:{REGION}:{MEMBER}:dbuser:{world['instance']['DbiResourceId']}/billing_app"
    assert json.loads(signer_call["Policy"])["Statement"][0]["Resource"] == dbuser
    assert describes == ["DescribeDBInstances"]
    assert query(body["token"])["DBUser"] == "billing_app"
    # cached as before: a second vend reads neither STS for the reader nor RDS again
    status, _, _ = vend(policy(f"reader_role: {READER}"), recorder)
    assert status == 200 and describes == ["DescribeDBInstances", "DescribeDBInstances"]  # new service, new cache
    out = capfd.readouterr()
    logs = out.out + out.err
    assert body["token"] not in logs
    assert len(recorder.secrets) >= 4  # reader and signer, both vends
    assert not [secret for secret in recorder.secrets if secret in logs]


def test_resolver_caches_the_reader_session_and_the_answer(world: dict[str, Any]) -> None:
    recorder = Recorder()
    loaded = load_policy_text(policy(f"reader_role: {READER}"), service_account=SERVICE)
    resolver = EndpointResolver(recorder)
    first = resolver.resolve(loaded.databases["billing"])
    second = resolver.resolve(loaded.databases["billing"])
    assert first == second and first.resource_id == world["instance"]["DbiResourceId"]
    assert [a["RoleArn"] for a in recorder.assumed] == [READER]


def test_default_reader_role_name_is_used_when_the_service_is_elsewhere(world: dict[str, Any], vend: Vend,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    describes = record_calls(monkeypatch, "rds")
    recorder = Recorder()
    text = policy(defaults="defaults:\n  reader_role_name: rdsvend-reader")
    status, body, _ = vend(text, recorder, service_account=None)  # the service learns its account from STS
    assert status == 200, body
    assert body["host"] == world["instance"]["Endpoint"]["Address"]
    assert recorder.assumed[0]["RoleArn"] == READER
    assert "sts:GetCallerIdentity" in recorder.calls and describes == ["DescribeDBInstances"]


def test_host_port_and_resource_id_need_no_rds_call_at_all(world: dict[str, Any], vend: Vend,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    describes = record_calls(monkeypatch, "rds")
    recorder = Recorder()
    text = policy("host: billing.internal.example", "port: 6432", "resource_id: db-ABCDEFGHIJKLMNOPQRSTUVWXY0")
    status, body, _ = vend(text, recorder)
    assert status == 200, body
    assert describes == [] and rds_calls_anywhere(recorder) == []
    assert [a["RoleArn"] for a in recorder.assumed] == [SIGNER]  # no reader role either
    assert (body["host"], body["port"]) == ("billing.internal.example", 6432)
    resource = json.loads(recorder.assumed[0]["Policy"])["Statement"][0]["Resource"]
    assert resource == f"arn:aws:rds-db:{REGION}:{MEMBER}:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXY0/billing_app"


def test_foreign_database_without_a_way_to_read_it_does_not_load(world: dict[str, Any]) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(policy(), "orgs.yaml", service_account=SERVICE)
    assert info.value.field == "databases.billing.reader_role"


def test_reader_role_that_cannot_be_assumed_is_503_never_500(world: dict[str, Any], vend: Vend,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName="rdsvend-fn")
    iam.put_user_policy(UserName="rdsvend-fn", PolicyName="own", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"], "Resource": SIGNER},
            {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}))
    keys = iam.create_access_key(UserName="rdsvend-fn")["AccessKey"]
    session = boto3.Session(aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
                            region_name=REGION)
    recorder = Recorder(session)

    @set_initial_no_auth_action_count(0)
    def enforced() -> tuple[int, Any, dict[str, str]]:
        answer: tuple[int, Any, dict[str, str]] = vend(policy(f"reader_role: {READER}"), recorder)
        return answer

    status, body, headers = enforced()
    assert status == 503 and body["error"]["code"] == "upstream_unavailable"
    assert int(headers["Retry-After"]) > 0
    assert READER not in json.dumps(body)  # the caller learns nothing about the roles
    assert [a["RoleArn"] for a in recorder.assumed] == [READER]  # refused there; nothing signed
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert f"could not assume reader role '{READER}'" in text and "AccessDenied" in text
    assert keys["SecretAccessKey"] not in text


def query(token: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(f"https://{token}").query).items()}


def test_service_account_from_the_environment_reaches_the_loader(tmp_path: Path) -> None:
    from chalicelib.policy_source import policy_source_from_env

    path = tmp_path / "access.yaml"
    path.write_text(policy())  # foreign database, no reader role, no endpoint
    assert policy_source_from_env({"RDSVEND_POLICY": str(path)}).get().databases["billing"].account == MEMBER
    source = policy_source_from_env({"RDSVEND_POLICY": str(path), "RDSVEND_SERVICE_ACCOUNT": SERVICE})
    with pytest.raises(PolicyLoadError, match="not the service's account"):
        source.get()
    bad = policy_source_from_env({"RDSVEND_POLICY": str(path), "RDSVEND_SERVICE_ACCOUNT": "12345"})
    with pytest.raises(PolicyLoadError, match="invalid service account '12345'"):
        bad.get()


@pytest.mark.parametrize(
    "extra, field, words",
    [
        ([f'account: "{SERVICE}"'], "signer_role", f"is in account {MEMBER}, not the database's account {SERVICE}"),
        (["reader_role: arn:aws:iam::999999999999:role/rdsvend-reader"], "reader_role",
         f"is in account 999999999999, not the database's account {MEMBER}"),
        ([], "reader_role", f"the database is in account {MEMBER}, not the service's account {SERVICE}"),
        (["resource_id: cluster-ABC"], "resource_id", "invalid resource id 'cluster-ABC' (expected db-..."),
        (["account: 444455556666"], "account", "must be a quoted string of 12 digits"),
    ],
)
def test_each_load_error_refuses_every_vend_and_logs_file_database_and_field(
    world: dict[str, Any],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    extra: list[str],
    field: str,
    words: str,
) -> None:
    """The service's own path: RDSVEND_POLICY + RDSVEND_SERVICE_ACCOUNT, through the Chalice app."""
    from chalicelib.policy_source import policy_source_from_env

    path = tmp_path / "access.yaml"
    path.write_text(policy(*extra))
    svc = VendingService(policy_source=policy_source_from_env({"RDSVEND_POLICY": str(path),
                                                               "RDSVEND_SERVICE_ACCOUNT": SERVICE}),
                         minter=TokenMinter(), resolver=EndpointResolver(ClientFactory()))
    set_vending_service(svc)
    try:
        event = load_event("post_tokens")
        event["requestContext"]["identity"].update(userArn=CALLER, accountId=SERVICE, principalOrgId=None,
                                                   sourceIp="10.1.2.3")
        event["body"] = json.dumps({"database": "billing", "db_user": "billing_app"})
        answer = app_module.app(event, None)
    finally:
        set_vending_service(None)
    assert answer["statusCode"] == 403 and json.loads(answer["body"])["error"]["code"] == "forbidden"
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert f"{path}, field 'databases.billing.{field}'" in text and words in text
