"""The local stack's AWS: moto in server mode, seeded from the world file.

moto keeps resources per account and acts in the account of the credentials it is called
with. Seeding therefore goes the way an operator would: the organization is created from the
management account, and every member account is reached by assuming its
``OrganizationAccountAccessRole`` (which moto creates with the account).

Two things are patched in-process, both while seeding and both documented here (a third,
the one AWS managed policy the world attaches, is in :mod:`devtools.local.directory`):

- moto draws organization and account ids at random; the world file fixes them (so the
  access policy can name them), so ``moto.organizations.utils`` hands out the world's ids
  for the one ``CreateOrganization`` / ``CreateAccount`` call that needs them;
- moto's RDS endpoint address is ``<id>.aaaaaaaaaa.<region>.rds.amazonaws.com``, which does
  not resolve; the created instance is switched to a subclass whose address is the local
  PostgreSQL's host, so ``DescribeDBInstances`` tells the truth about where it listens;
  moto also gives every instance the same ``DbiResourceId``: each gets its own random one,
  as RDS does.

:class:`MotoSecretLookup` reads moto's in-process backends (the moto server runs in this
process) to find the secret behind an access key: IAM users' long-term keys and STS
assumed-role session credentials, with the principal ARN and account they sign for.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.aws.arn import dbuser_arn
from devtools.local.directory import create_directories, provide_aws_managed_policy
from devtools.local.sigv4 import Credential
from devtools.local.world import World

__all__ = [
    "Keys",
    "InstanceInfo",
    "SeededWorld",
    "MotoServer",
    "AccountSessions",
    "MotoSecretLookup",
    "seed_world",
    "ORG_ACCESS_ROLE",
    "org_id_of",
]

ORG_ACCESS_ROLE = "OrganizationAccountAccessRole"
_SEED_SESSION = "rdsvend-local-seed"
_CLIENT_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=15)
_ID_PATCH_LOCK = threading.Lock()


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


@dataclass(frozen=True)
class InstanceInfo:
    identifier: str
    account: str
    region: str
    resource_id: str  # DbiResourceId
    arn: str
    host: str
    port: int
    dbname: str

    def dbuser_arn(self, user: str) -> str:
        return dbuser_arn(self.region, self.account, self.resource_id, user)


@dataclass(frozen=True)
class SeededWorld:
    """What seeding created: ids moto chose and the credentials the stack hands out."""

    endpoint_url: str
    region: str
    org_id: str
    management_account: str
    root_id: str
    units: Mapping[str, str]  # OU name -> ou id
    scps: Mapping[str, str]  # SCP name -> policy id
    callers: Mapping[str, Keys]  # "allowed" / "denied" -> the IAM user's access key
    execution: Keys  # the service execution role, assumed in the service account
    instances: Mapping[str, InstanceInfo]
    signer_role_arn: str
    directories: Mapping[str, str] = field(default_factory=dict)  # directory name -> Directory Service id

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SeededWorld:
        return cls(
            endpoint_url=data["endpoint_url"],
            region=data["region"],
            org_id=data["org_id"],
            management_account=data["management_account"],
            root_id=data["root_id"],
            units=dict(data["units"]),
            scps=dict(data["scps"]),
            callers={k: Keys(**v) for k, v in data["callers"].items()},
            execution=Keys(**data["execution"]),
            instances={k: InstanceInfo(**v) for k, v in data["instances"].items()},
            signer_role_arn=data["signer_role_arn"],
            directories=dict(data.get("directories") or {}),
        )


_READ_PREFIXES = ("Get", "List", "Describe", "Simulate", "Generate")
_WATCHED_SERVICES = frozenset({"iam", "organizations"})


class _WriteCounter:
    """WSGI wrapper counting requests that may change IAM or Organizations state.

    A cache of what IAM and SCPs allow stays exact while this count stays the same: any
    Create/Put/Attach/Detach/Delete/Update... call to ``iam`` or ``organizations`` moves it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.generation = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if self._is_write(environ):
            with self._lock:
                self.generation += 1
        return self.app(environ, start_response)

    @staticmethod
    def _is_write(environ: dict) -> bool:
        import io
        import re
        from urllib.parse import parse_qs

        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/", auth)
        service = scope.group(1) if scope else ""
        if service not in _WATCHED_SERVICES:
            return False
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            action = target.rsplit(".", 1)[-1]
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            params = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(body.decode("utf-8", "replace"))
            action = (params.get("Action") or [""])[0]
        return not action.startswith(_READ_PREFIXES)


class MotoServer:
    """moto's threaded server on 127.0.0.1, on a free port, in this process.

    ``generation`` counts the calls that may have changed IAM or Organizations state.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._counter: _WriteCounter | None = None
        self.url: str | None = None

    @property
    def generation(self) -> int:
        return self._counter.generation if self._counter is not None else 0

    def start(self) -> str:
        self._server.start()
        wsgi_server = self._server._server  # werkzeug's server, made by start()
        assert wsgi_server is not None
        self._counter = _WriteCounter(wsgi_server.app)
        wsgi_server.app = self._counter
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def wrap(self, middleware: Any) -> None:
        """Put a WSGI middleware (``middleware(app) -> app``) in front of the started server."""
        wsgi_server = self._server._server
        assert wsgi_server is not None, "start() first"
        wsgi_server.app = middleware(wsgi_server.app)

    def stop(self) -> None:
        if self.url is not None:
            self._server.stop()
            self.url = None


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
                aws_access_key_id="AKIAMANAGEMENTLOCAL0", aws_secret_access_key="management-local",
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


def _header_adder(account: str):
    def add(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    return add


@contextmanager
def _fixed_moto_ids(*, org_id: str | None = None, account_id: str | None = None) -> Iterator[None]:
    """Make moto's next organization/account id the world's (moto draws them at random)."""
    from moto.organizations import utils

    with _ID_PATCH_LOCK:
        saved = utils.make_random_org_id, utils.make_random_account_id
        if org_id is not None:
            utils.make_random_org_id = lambda: org_id
        if account_id is not None:
            utils.make_random_account_id = lambda: account_id
        try:
            yield
        finally:
            utils.make_random_org_id, utils.make_random_account_id = saved


def _point_instance_at(account: str, region: str, identifier: str, host: str) -> None:
    """Make moto report ``host`` as the instance's endpoint address (the port is set at create),
    and give the instance a resource id of its own."""
    import secrets as _secrets

    from moto.rds.models import rds_backends

    instance = rds_backends[account][region].databases[identifier]
    base = type(instance)
    local_cls = _LOCAL_INSTANCE_CLASSES.get(base)
    if local_cls is None:
        local_cls = type(f"Local{base.__name__}", (base,), {
            "address": property(lambda self: self._rdsvend_local_host),
            "__doc__": "A moto DB instance whose endpoint is the local PostgreSQL.",
        })
        _LOCAL_INSTANCE_CLASSES[base] = local_cls
    instance._rdsvend_local_host = host
    instance.__class__ = local_cls
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    instance.dbi_resource_id = "db-" + "".join(_secrets.choice(alphabet) for _ in range(26))


_LOCAL_INSTANCE_CLASSES: dict[type, type] = {}


def _trust_document(principal: Mapping[str, Any]) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": dict(principal), "Action": "sts:AssumeRole"}],
    })


def seed_world(world: World, endpoint_url: str, *, db_host: str, db_port: int | Mapping[str, int],
               master_password: str) -> SeededWorld:
    """Create the world in the moto server at ``endpoint_url`` through its public API.

    ``db_port`` is where the local PostgreSQL of each database listens (one port for all, or
    a mapping from instance identifier to port); the instances' endpoints say so.
    """
    region = world.region
    org = world.organization
    sessions = AccountSessions(endpoint_url, region, org.management_account)
    orgs = sessions.client("organizations", org.management_account)

    with _fixed_moto_ids(org_id=org.id):
        orgs.create_organization(FeatureSet="ALL")
    root_id = orgs.list_roots()["Roots"][0]["Id"]
    for account in world.member_accounts():
        with _fixed_moto_ids(account_id=account.id):
            status = orgs.create_account(AccountName=account.name, Email=f"{account.name}@rdsvend.local")
        created = status["CreateAccountStatus"]["AccountId"]
        if created != account.id:  # pragma: no cover - moto changed how it draws ids
            raise RuntimeError(f"moto created account {created}, not {account.id}")

    scp_ids = {}
    for scp in org.scps.values():
        policy = orgs.create_policy(Name=scp.name, Description=scp.description, Type="SERVICE_CONTROL_POLICY",
                                    Content=json.dumps(scp.document))
        scp_ids[scp.name] = policy["Policy"]["PolicySummary"]["Id"]
    unit_ids = {}
    for unit in org.units:
        ou_id = orgs.create_organizational_unit(ParentId=root_id, Name=unit.name)["OrganizationalUnit"]["Id"]
        unit_ids[unit.name] = ou_id
        for account_id in unit.accounts:
            orgs.move_account(AccountId=account_id, SourceParentId=root_id, DestinationParentId=ou_id)
        for scp_name in unit.scps:
            orgs.attach_policy(PolicyId=scp_ids[scp_name], TargetId=ou_id)

    instances: dict[str, InstanceInfo] = {}
    callers: dict[str, Keys] = {}
    directories: dict[str, str] = {}
    parts = {"allowed": world.allowed_caller, "denied": world.denied_caller}
    if world.operator is not None:
        parts["operator"] = world.operator
    for account in world.member_accounts():
        rds = sessions.client("rds", account.id)
        if account.directories:
            directories.update(create_directories(sessions.client("ec2", account.id), sessions.client("ds", account.id),
                                                  region, account.directories))
        for db in account.databases.values():
            domain = {} if db.domain is None else {"Domain": directories[db.domain.directory],
                                                   "DomainIAMRoleName": db.domain.iam_role}
            rds.create_db_instance(
                DBInstanceIdentifier=db.identifier, Engine=db.engine, EngineVersion=db.engine_version,
                DBInstanceClass=db.instance_class, AllocatedStorage=20, DBName=db.dbname,
                MasterUsername="postgres" if db.engine == "postgres" else "admin", MasterUserPassword=master_password,
                Port=db_port if isinstance(db_port, int) else db_port[db.identifier],
                EnableIAMDatabaseAuthentication=True, **domain,
            )
            _point_instance_at(account.id, region, db.identifier, db_host)
            described = rds.describe_db_instances(DBInstanceIdentifier=db.identifier)["DBInstances"][0]
            instances[db.identifier] = InstanceInfo(
                identifier=db.identifier, account=account.id, region=region,
                resource_id=described["DbiResourceId"], arn=described["DBInstanceArn"],
                host=described["Endpoint"]["Address"], port=int(described["Endpoint"]["Port"]),
                dbname=db.dbname)

    # Users first: the roles' trust policies name some of them (AWS refuses unknown principals).
    for account in world.accounts.values():
        iam = sessions.client("iam", account.id)
        for user in account.users.values():
            arn = iam.create_user(UserName=user.name)["User"]["Arn"]
            for name, doc in user.policies.items():
                iam.put_user_policy(UserName=user.name, PolicyName=name, PolicyDocument=json.dumps(doc))
            if user.access_key:
                key = iam.create_access_key(UserName=user.name)["AccessKey"]
                for part, ref in parts.items():
                    if (ref.account, ref.user) == (account.id, user.name):
                        callers[part] = Keys(key["AccessKeyId"], key["SecretAccessKey"], arn, account.id)
    for account in world.accounts.values():
        iam = sessions.client("iam", account.id)
        for role in account.roles.values():
            iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=_trust_document(role.trust))
            for name, doc in role.policies.items():
                iam.put_role_policy(RoleName=role.name, PolicyName=name, PolicyDocument=json.dumps(doc))
            for policy_arn in role.managed_policies:
                provide_aws_managed_policy(account.id, policy_arn)
                iam.attach_role_policy(RoleName=role.name, PolicyArn=policy_arn)
            if role.rds_connect:
                arns = [instances[db].dbuser_arn(user) for db in role.rds_connect
                        for user in account.databases[db].iam_users()]
                document = {"Version": "2012-10-17", "Statement": [
                    {"Sid": "ConnectAsDeclaredUsers", "Effect": "Allow", "Action": "rds-db:connect",
                     "Resource": arns}]}
                policy_arn = iam.create_policy(PolicyName=f"{role.name}-rds-connect",
                                               PolicyDocument=json.dumps(document))["Policy"]["Arn"]
                iam.attach_role_policy(RoleName=role.name, PolicyArn=policy_arn)

    # What the Lambda would run as: its execution role, assumed in the service account
    # (as Lambda does), for as long as STS allows.
    execution = sessions.assume(world.execution_role_arn, "rdsvend-local-function",
                                via=world.service_account, duration=43200)
    return SeededWorld(
        endpoint_url=endpoint_url, region=region, org_id=org.id, management_account=org.management_account,
        root_id=root_id, units=unit_ids, scps=scp_ids, callers=callers, execution=execution,
        instances=instances, signer_role_arn=world.signer_role_arn, directories=directories)


class MotoSecretLookup:
    """A :class:`~devtools.local.sigv4.SecretLookup` over moto's in-process backends.

    Knows IAM users' active long-term keys and STS assumed-role session credentials that
    have not expired; anything else is an unknown key.
    """

    def __init__(self, *, partition: str = "aws", clock: Any = None) -> None:
        from chalicelib.clock import SYSTEM_CLOCK

        self._partition = partition
        self._clock = clock or SYSTEM_CLOCK

    def secret_for(self, access_key_id: str) -> Credential | None:
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        for account_id, by_partition in list(iam_backends.items()):
            backend = by_partition[self._partition]
            key = backend.access_keys.get(access_key_id)
            if key is None:
                continue
            if key.status != "Active":
                return None
            if key.user_name is not None:
                user = backend.users.get(key.user_name)
                if user is None:
                    return None
                return Credential(access_key_id, key.secret_access_key, None, user.arn, account_id)
            assumed = sts_backends[account_id][self._partition].get_assumed_role_from_access_key(access_key_id)
            if assumed is None:
                return None
            expiration = assumed.expiration.replace(tzinfo=UTC)
            if expiration <= self._clock.now():
                return None
            return Credential(access_key_id, assumed.secret_access_key, assumed.session_token,
                              assumed.arn, account_id)
        return None

    def session_policy(self, access_key_id: str) -> Mapping[str, Any] | None:
        """The inline session policy given to AssumeRole for these credentials, if any.

        AWS has no API that reads it back; the local stack reads moto's record of it.
        """
        from moto.sts.models import sts_backends

        for _account_id, by_partition in list(sts_backends.items()):
            assumed = by_partition[self._partition].get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                return json.loads(assumed.policy) if assumed.policy else None
        return None

    def role_arn(self, access_key_id: str) -> str | None:
        """The IAM role ARN behind assumed-role session credentials."""
        from moto.sts.models import sts_backends

        for _account_id, by_partition in list(sts_backends.items()):
            assumed = by_partition[self._partition].get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                return assumed.role_arn
        return None



    def caller_id(self, credential: Credential) -> str:
        """What API Gateway puts in ``identity.caller``: the user id, or ``ROLEID:session``."""
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        account = credential.account
        assumed = sts_backends[account][self._partition].get_assumed_role_from_access_key(credential.access_key_id)
        if assumed is not None:
            return assumed.user_id
        user = iam_backends[account][self._partition].get_user_from_access_key_id(credential.access_key_id)
        return user.id if user is not None else credential.access_key_id


def org_id_of(account: str, partition: str = "aws") -> str | None:
    """The id of the organization ``account`` belongs to in the moto in this process, if any."""
    from moto.organizations.models import organizations_backends

    own = organizations_backends[account][partition].org
    if own is not None:
        return own.id
    master = organizations_backends.master_accounts.get(account)
    if master is None:
        return None
    org = organizations_backends[master[0]][master[1]].org
    return org.id if org is not None else None
