"""The canary's real adapters, built from the policy and the environment.

Environment (all optional):

- ``AWS_ENDPOINT_URL``: boto3's own; points every AWS client at the local stack;
- ``RDSVEND_SIGNER_PRINCIPAL``: the IAM principal that signs for databases without
  ``signer_role`` (the vend function's role); default: the canary's own identity;
- ``RDSVEND_ORG_ROLE_ARN``: a role to assume for reading AWS Organizations (SCPs can only be
  read from the management account or a delegated administrator); default: own credentials.
  RDS and the signer role's IAM policies of a database in another account are read through
  the database's reader role (:mod:`chalicelib.canary.accounts`);
- ``RDSVEND_CANARY_ADMIN_DSN`` (or the local stack's ``RDSVEND_LOCAL_ADMIN_DSN``): an
  administrator's connection string; used, for targets on the same host and port, to read
  role memberships before the login attempt. Never logged;
- ``PGSSLROOTCERT``: the CA bundle when the policy names none (the local stack's CA);
  default: the RDS global bundle shipped with rdsvend (MySQL-family logins use it too);
- ``RDSVEND_CANARY_MYSQL_ADMIN_DSN`` (or the local stack's ``RDSVEND_LOCAL_MYSQL_ADMIN_DSN``):
  ``mysql://USER:PASSWORD@HOST:PORT/`` of a MySQL-family administrator (the master user);
  used, for targets at that host and port, to read users' plugins and grants before the
  login attempt. Never logged.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from chalicelib.aws.probe import AwsClients, probe
from chalicelib.canary.accounts import AccountReaders
from chalicelib.canary.checks_auth_log import DEFAULT_INTERVAL_SECONDS, CloudWatchAuthErrorLog
from chalicelib.canary.checks_kerberos import BotoDirectoryRoleFacts
from chalicelib.canary.checks_password import BotoSecretFacts
from chalicelib.canary.checks_proxy import BotoProxyFacts
from chalicelib.canary.checks_rds import BotoRdsFacts
from chalicelib.canary.iam_facts import LiveConnectEvaluator
from chalicelib.canary.target_dsql import DsqlCanaryDeps, DsqlClusterFacts, EngineMappings
from chalicelib.canary.target_run import CanaryDeps
from chalicelib.engines.mysql import MysqlAdmin, MysqlEngine
from chalicelib.engines.postgres import PostgresAdmin, PostgresEngine
from chalicelib.engines.trust import ssl_root_cert_for
from chalicelib.errors import IamFetchError, ProbeError, RdsvendError
from chalicelib.identity import CallerIdentity, identity_from_arn
from chalicelib.policy.model import AccessPolicy, Database
from chalicelib.settings import Settings
from chalicelib.signer import TokenMinter
from chalicelib.signer.botocore_credentials import BotocoreCredentialsProvider
from chalicelib.signer.roles import StsRoleAssumer

__all__ = ["admin_dsn_from_env", "CanaryIdentity", "MinterTokens",
           "EnvSigner", "canary_deps"]



def _settings(env: Mapping[str, str] | Settings | None) -> Settings:
    return env if isinstance(env, Settings) else Settings.from_env(env)


def admin_dsn_from_env(env: Mapping[str, str] | Settings) -> str | None:
    return _settings(env).admin_dsn


class CanaryIdentity:
    """Who the canary is (STS GetCallerIdentity, asked once)."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients
        self._lock = threading.Lock()
        self._identity: CallerIdentity | None = None

    def get(self) -> CallerIdentity:
        with self._lock:
            if self._identity is None:
                with probe("sts", "GetCallerIdentity"):
                    arn = self._clients.client("sts").get_caller_identity()["Arn"]
                try:
                    self._identity = identity_from_arn(arn)
                except RdsvendError as exc:
                    raise ProbeError(f"the canary's own identity '{arn}' is not usable: {exc}") from None
            return self._identity


class MinterTokens:
    """Fresh tokens (no token cache) from rdsvend's own signer, as the canary's identity."""

    def __init__(self, identity: CanaryIdentity, minter: TokenMinter | None = None) -> None:
        self._identity = identity
        if minter is None:
            minter = TokenMinter(cache_tokens=False)
        self._minter = minter

    def token(self, database: Database, db_user: str, host: str, port: int, resource_id: str | None) -> str:
        identity = self._identity.get()
        try:
            return self._minter.mint(identity, database, db_user, host, port, resource_id=resource_id).token
        except RdsvendError as exc:
            detail = getattr(exc, "detail", "") or type(exc).__name__
            raise ProbeError(f"signing failed: {detail}", service="sts") from None
        except ValueError as exc:
            raise ProbeError(f"signing failed: {exc}") from None


class EnvSigner:
    def __init__(self, identity: CanaryIdentity, default_principal: str | None = None) -> None:
        self._identity = identity
        self._default = default_principal

    def principal(self, database: Database) -> str:
        if database.signer_role:
            return database.signer_role
        if self._default:
            return self._default
        return self._identity.get().principal


def _org_client(clients: AwsClients, settings: Settings, endpoint_url: str | None) -> Any:
    role = settings.org_role_arn
    if not role:
        return clients.client("organizations", "us-east-1")
    return _AssumedOrgClient(clients, role, endpoint_url)


class _AssumedOrgClient:
    """An Organizations client with credentials from AssumeRole, made on first use."""

    def __init__(self, clients: AwsClients, role_arn: str, endpoint_url: str | None) -> None:
        self._clients = clients
        self._role = role_arn
        self._endpoint = endpoint_url
        self._client: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                with probe("sts", "AssumeRole"):
                    creds = self._clients.client("sts").assume_role(
                        RoleArn=self._role, RoleSessionName="rdsvend-canary-org")["Credentials"]
                session = boto3.session.Session(
                    aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"])
                kwargs: dict[str, Any] = {"region_name": "us-east-1"}
                if self._endpoint:
                    kwargs["endpoint_url"] = self._endpoint
                self._client = session.client("organizations", **kwargs)
            return self._client

    def __getattr__(self, name: str) -> Any:
        try:
            client = self._get()
        except ProbeError as exc:
            raise IamFetchError(exc.cause, service="sts", code=exc.code) from None
        return getattr(client, name)


def canary_deps(
    policy: AccessPolicy,
    env: Mapping[str, str] | None = None,
    *,
    endpoint_url: str | None = None,
    session: Any = None,
    minter: TokenMinter | None = None,
) -> CanaryDeps:
    """Everything the canary needs to check ``policy`` for real."""
    settings = _settings(env)
    aws_timeout = max(1.0, min(5.0, policy.canary.timeout_seconds / 3))
    clients = AwsClients(session=session, endpoint_url=endpoint_url, timeout_seconds=aws_timeout)
    identity = CanaryIdentity(clients)
    if minter is None and (endpoint_url or session is not None):
        minter = TokenMinter(
            cache_tokens=False,
            credentials=BotocoreCredentialsProvider(getattr(session, "_session", None)),
            assume_role=StsRoleAssumer(lambda service, region=None: clients.client(service, region)),
        )
    admin_dsn = settings.admin_dsn
    readers = AccountReaders(policy, clients, make_clients=lambda role_session: AwsClients(
        session=role_session, endpoint_url=endpoint_url, timeout_seconds=aws_timeout).client)
    return CanaryDeps(
        rds=BotoRdsFacts(clients, readers),
        connect=LiveConnectEvaluator(iam_client=clients.client("iam"),
                                     org_client=_org_client(clients, settings, endpoint_url),
                                     iam_for=readers.iam_for),
        directory=BotoDirectoryRoleFacts(clients, readers.iam_for),
        tokens=MinterTokens(identity, minter),
        db=PostgresEngine(),
        signer=EnvSigner(identity, settings.signer_principal),
        ssl_root_cert=ssl_root_cert_for(policy, settings),
        admin=PostgresAdmin(admin_dsn) if admin_dsn else None,
        secrets=BotoSecretFacts(clients),
        auth_log=_auth_log(readers, settings),
        proxy=BotoProxyFacts(clients, readers),
        dsql=_dsql_deps(policy, settings, readers),
        **_mysql_deps(policy, settings),
    )


def _dsql_deps(policy: AccessPolicy, settings: Settings, readers: AccountReaders) -> Any:
    """DSQL clusters read through their account's reader (``dsql:GetCluster``), logins verified
    against the system's public roots unless a bundle is configured (the local stack's CA)."""

    configured = policy.canary.ssl_root_cert or settings.ssl_root_cert
    return DsqlCanaryDeps(cluster=DsqlClusterFacts(lambda database: readers.client(database, "dsql")),
                          mappings=EngineMappings(),
                          ssl_root_cert=ssl_root_cert_for(policy, settings) if configured else "system")


def _auth_log(readers: AccountReaders, settings: Settings) -> Any:
    """Each database's iam-db-auth-error log, in its account, since the previous scheduled run
    (``RDSVEND_CANARY_INTERVAL_SECONDS``, default the schedule's 300 s)."""

    try:
        interval = float(settings.canary_interval_seconds or DEFAULT_INTERVAL_SECONDS)
    except ValueError:
        interval = DEFAULT_INTERVAL_SECONDS
    interval = min(max(interval, 1.0), 86400.0)
    return CloudWatchAuthErrorLog(lambda database: readers.client(database, "logs"), interval=interval)


def _mysql_deps(policy: AccessPolicy, settings: Settings) -> dict[str, Any]:
    """The MySQL family's connector and administrator view (see the module docstring)."""
    dsn = settings.mysql_admin_dsn
    return {"mysql_db": MysqlEngine(),
            "mysql_admin": MysqlAdmin(dsn, ssl_root_cert_for(policy, settings)) if dsn else None}
