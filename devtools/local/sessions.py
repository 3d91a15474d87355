"""Credentials the local stack makes (:class:`Keys`) and boto3 clients against its moto
server acting in a chosen account (:class:`AccountSessions`): the management account through
moto's account header, every other one through ``OrganizationAccountAccessRole``."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from devtools.local.credentials import Credential

__all__ = ["Keys", "AccountSessions", "ORG_ACCESS_ROLE", "MANAGEMENT_ROOT_KEY", "management_root", "service_assumes"]

ORG_ACCESS_ROLE = "OrganizationAccountAccessRole"
#: The management account's root user's access key, as the stack (and its tests) act with it
#: through moto's ``x-moto-account-id`` header. Loopback only; the local AWS knows no other root.
MANAGEMENT_ROOT_KEY = ("AKIAMANAGEMENTLOCAL0", "management-local")
_SEED_SESSION = "rdsvend-local-seed"
_CLIENT_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=15)


@dataclass(frozen=True)
class Keys:
    """AWS credentials the stack made, with whom they sign for. ``repr`` hides the secrets."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    arn: str
    account: str
    session_token: str | None = field(default=None, repr=False)

    def session(self, region: str) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            region_name=region,
        )

    def env(self) -> dict[str, str]:
        out = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            out["AWS_SESSION_TOKEN"] = self.session_token
        return out


class AccountSessions:
    """boto3 clients against the moto server, acting in a chosen account.

    The management account is addressed with moto's ``x-moto-account-id`` header (it has no
    IAM user to sign as); every other account through ``OrganizationAccountAccessRole``
    assumed from the management account, as an operator would.
    """

    def __init__(self, endpoint_url: str, region: str, management_account: str) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.management_account = management_account
        self._lock = threading.Lock()
        self._keys: dict[str, Keys] = {}
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, account: str) -> Any:
        with self._lock:
            cached = self._clients.get((service, account))
        if cached is not None:
            return cached
        if account == self.management_account:
            session = boto3.session.Session(
                aws_access_key_id=MANAGEMENT_ROOT_KEY[0], aws_secret_access_key=MANAGEMENT_ROOT_KEY[1],
                region_name=self.region)
            client = session.client(service, endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG)
            client.meta.events.register("before-sign", _header_adder(account))
        else:
            client = self.keys_for(account).session(self.region).client(
                service, endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG)
        with self._lock:
            self._clients[(service, account)] = client
        return client

    def keys_for(self, account: str) -> Keys:
        with self._lock:
            keys = self._keys.get(account)
        if keys is None:
            keys = self.assume(f"arn:aws:iam::{account}:role/{ORG_ACCESS_ROLE}", _SEED_SESSION,
                               via=self.management_account)
            with self._lock:
                self._keys[account] = keys
        return keys

    def assume(self, role_arn: str, session_name: str, *, via: str, duration: int = 3600) -> Keys:
        sts = self.client("sts", via)
        answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name, DurationSeconds=duration)
        creds = answer["Credentials"]
        return Keys(creds["AccessKeyId"], creds["SecretAccessKey"], answer["AssumedRoleUser"]["Arn"],
                    role_arn.split(":")[4], creds["SessionToken"])


def management_root(account: str) -> Credential:
    """The management account's root key as the local AWS's verifier knows it."""
    return Credential(MANAGEMENT_ROOT_KEY[0], MANAGEMENT_ROOT_KEY[1], None, f"arn:aws:iam::{account}:root", account)


def _header_adder(account: str) -> Callable[..., None]:
    def add(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    return add


def service_assumes(role_arn: str, session_name: str, region: str, *, duration: int = 3600) -> Keys:
    """Session credentials for a role, made as an AWS service makes them for the role it runs
    as (Lambda for a function's execution role): in moto's STS of this process, not through a
    request, since no IAM principal asks for them."""
    from moto.sts.models import sts_backends

    account = role_arn.split(":")[4]
    assumed = sts_backends[account]["aws"].assume_role(region_name=region, role_session_name=session_name,
                                                       role_arn=role_arn, policy="", duration=duration,
                                                       external_id="")
    return Keys(assumed.access_key_id, assumed.secret_access_key, assumed.arn, assumed.account_id,
                assumed.session_token)
