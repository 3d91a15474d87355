"""Signing with the function's own credentials and with cross-account signer roles (moto)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.credentials import RefreshableCredentials
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.sts.models import sts_backends

from chalicelib.aws.clients import ClientFactory
from chalicelib.identity import identity_from_arn
from chalicelib.policy.model import Database, DbUser
from chalicelib.signer import BotocoreCredentialsProvider, TokenMinter
from chalicelib.signer.roles import StsRoleAssumer

DB_ACCOUNT = "444455556666"
REGION = "eu-west-1"
SIGNER_ROLE = f"arn:aws:iam::{DB_ACCOUNT}:role/rdsvend-signer"
CALLER = identity_from_arn("arn:aws:sts::111122223333:assumed-role/orders-api-1/i-0abc")


def query(token: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(f"https://{token}").query).items()}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def db_account(aws: None) -> dict[str, Any]:
    """A second account that owns the database and the signer role."""
    admin = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{DB_ACCOUNT}:role/admin", RoleSessionName="setup")["Credentials"]
    session = boto3.Session(aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"],
                            aws_session_token=admin["SessionToken"], region_name=REGION)
    assert session.client("sts").get_caller_identity()["Account"] == DB_ACCOUNT
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:root"},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"]}]}
    session.client("iam").create_role(RoleName="rdsvend-signer", AssumeRolePolicyDocument=json.dumps(trust))
    instance = session.client("rds").create_db_instance(
        DBInstanceIdentifier="orders-prod", Engine="postgres", DBInstanceClass="db.t3.micro",
        MasterUsername="root", MasterUserPassword="not-used-123", AllocatedStorage=20,
        EnableIAMDatabaseAuthentication=True)["DBInstance"]
    described: dict[str, Any] = instance
    return described


def database(signer_role: str | None) -> Database:
    return Database(name="orders-prod", engine="postgres", region=REGION, kind="instance",
                    identifier="orders-prod", users={"orders_app": DbUser("orders_app", "iam")},
                    signer_role=signer_role)


class RecordingFactory:
    """The production client factory, recording the AssumeRole parameters sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.session = boto3.Session()
        self.session.events.register("provide-client-params.sts.AssumeRole",
                                     lambda params, **_: self.sent.append(dict(params)))
        self.factory = ClientFactory(session_factory=lambda: self.session)

    def __call__(self, service: str, region: str | None = None) -> Any:
        return self.factory(service, region)


def test_own_credentials_sign_with_the_session_token_and_full_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAFUNCTION")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "function-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "function-session")
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    minter = TokenMinter()  # botocore's default chain, as in Lambda
    token = minter.mint(CALLER, database(None), "orders_app", "orders.example.com", 5432)
    q = query(token.token)
    assert q["X-Amz-Credential"].startswith("ASIAFUNCTION/")
    assert q["X-Amz-Security-Token"] == "function-session"
    assert token.expires_at - token.signed_at == timedelta(seconds=870)


def test_cross_account_signer_role_signs_in_the_database_account(db_account: dict[str, Any]) -> None:
    factory = RecordingFactory()
    minter = TokenMinter(assume_role=StsRoleAssumer(factory))
    resource_id = db_account["DbiResourceId"]
    endpoint = db_account["Endpoint"]
    token = minter.mint(CALLER, database(SIGNER_ROLE), "orders_app", endpoint["Address"], endpoint["Port"],
                        resource_id=resource_id)

    (sent,) = factory.sent
    dbuser = f"arn:aws:rds-db:{REGION}:{DB_ACCOUNT}:dbuser:{resource_id}/orders_app"
    assert sent["RoleArn"] == SIGNER_ROLE
    assert sent["SourceIdentity"] == "role.orders-api-1@111122223333"
    assert sent["RoleSessionName"] == "role.orders-api-1.i-0abc@111122223333"
    assert json.loads(sent["Policy"])["Statement"] == [
        {"Effect": "Allow", "Action": "rds-db:connect", "Resource": dbuser}]
    # moto recorded the session in the database's account, with the scoped policy
    (assumed,) = [r for r in sts_backends[DB_ACCOUNT]["aws"].assumed_roles if r.role_arn == SIGNER_ROLE]
    assert json.loads(assumed.policy)["Statement"][0]["Resource"] == dbuser

    # the token is signed with those role credentials, which act in the database's account
    creds = minter.signing_credentials(CALLER, database(SIGNER_ROLE), "orders_app", resource_id)
    assert query(token.token)["X-Amz-Credential"].startswith(f"{creds.access_key}/")
    assert query(token.token)["X-Amz-Security-Token"] == creds.token
    who = boto3.client("sts", region_name=REGION, aws_access_key_id=creds.access_key,
                       aws_secret_access_key=creds.secret_key, aws_session_token=creds.token).get_caller_identity()
    assert who["Account"] == DB_ACCOUNT
    assert who["Arn"] == f"arn:aws:sts::{DB_ACCOUNT}:assumed-role/rdsvend-signer/role.orders-api-1.i-0abc@111122223333"
    assert len(factory.sent) == 1  # cached: no second AssumeRole


def test_each_caller_and_db_user_gets_its_own_role_session(db_account: dict[str, Any]) -> None:
    factory = RecordingFactory()
    minter = TokenMinter(assume_role=StsRoleAssumer(factory))
    rid, db = db_account["DbiResourceId"], database(SIGNER_ROLE)
    other = identity_from_arn("arn:aws:iam::111122223333:role/billing")
    minter.mint(CALLER, db, "orders_app", "h.example", 5432, resource_id=rid)
    minter.mint(CALLER, db, "orders_app", "h.example", 5432, resource_id=rid)
    minter.mint(other, db, "orders_app", "h.example", 5432, resource_id=rid)
    minter.mint(CALLER, db, "orders_owner", "h.example", 5432, resource_id=rid)
    assert [(s["SourceIdentity"], json.loads(s["Policy"])["Statement"][0]["Resource"].rsplit("/", 1)[1])
            for s in factory.sent] == [("role.orders-api-1@111122223333", "orders_app"),
                                       ("role.billing@111122223333", "orders_app"),
                                       ("role.orders-api-1@111122223333", "orders_owner")]


class RefreshingSession:
    """A botocore session stand-in whose credentials are botocore's RefreshableCredentials."""

    def __init__(self, lifetime: timedelta) -> None:
        self.refreshes = 0
        self.lifetime = lifetime
        self.expiry = datetime.now(UTC)  # of the credentials last handed out
        self.creds = RefreshableCredentials.create_from_metadata(
            self._metadata(), refresh_using=self._refresh, method="test")

    def _metadata(self) -> dict[str, str]:
        self.expiry = datetime.now(UTC) + self.lifetime
        return {"access_key": f"ASIAREFRESH{self.refreshes}", "secret_key": "s", "token": "t",
                "expiry_time": self.expiry.isoformat()}

    def _refresh(self) -> dict[str, str]:
        self.refreshes += 1
        return self._metadata()

    def get_credentials(self) -> RefreshableCredentials:
        return self.creds


def test_expiry_is_read_from_botocore_refreshable_credentials() -> None:
    session = RefreshingSession(timedelta(minutes=12))
    minter = TokenMinter(credentials=BotocoreCredentialsProvider(session))
    token = minter.mint(CALLER, database(None), "orders_app", "h.example", 5432)
    assert token.expires_at == session.expiry - timedelta(seconds=30)
    assert timedelta(minutes=11) < token.expires_at - token.signed_at < timedelta(minutes=12)


def test_long_lived_refreshable_credentials_do_not_shorten_the_token() -> None:
    minter = TokenMinter(credentials=BotocoreCredentialsProvider(RefreshingSession(timedelta(hours=6))))
    token = minter.mint(CALLER, database(None), "orders_app", "h.example", 5432)
    assert token.expires_at - token.signed_at == timedelta(seconds=870)
