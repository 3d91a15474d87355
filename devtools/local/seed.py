"""Seeding moto from the world file, the way an operator would: the organization from the
management account, every member account through ``OrganizationAccountAccessRole``.

Two things are patched in-process while seeding (a third, the one AWS managed policy the world
attaches, is in :mod:`devtools.local.directory`):

- moto draws organization and account ids at random; the world file fixes them (so the
  access policy can name them), so ``moto.organizations.utils`` hands out the world's ids
  for the one ``CreateOrganization`` / ``CreateAccount`` call that needs them;
- moto's RDS endpoint address is ``<id>.aaaaaaaaaa.<region>.rds.amazonaws.com``, which does
  not resolve; the created instance is switched to a subclass whose address is the local
  PostgreSQL's host, so ``DescribeDBInstances`` tells the truth about where it listens;
  moto also gives every instance the same ``DbiResourceId``: each gets its own random one,
  as RDS does.
"""
from __future__ import annotations

import json
import secrets as _secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib.aws.arn import dbuser_arn
from devtools.local.directory import create_directories, provide_aws_managed_policy
from devtools.local.proxies import ProxyInfo, create_proxies
from devtools.local.sessions import ORG_ACCESS_ROLE, AccountSessions, Keys, service_assumes
from devtools.local.world import World

__all__ = ["InstanceInfo", "DsqlInfo", "SeededWorld", "seed_world", "service_assumes"]

_ID_PATCH_LOCK = threading.Lock()


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
class DsqlInfo:
    """An Aurora DSQL cluster created in the local DSQL API (moto chose its id)."""

    name: str  # the world's name for it (and the access policy's database name)
    identifier: str
    account: str
    region: str
    arn: str


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
    proxies: Mapping[str, ProxyInfo] = field(default_factory=dict)  # RDS Proxy name -> what was made
    dsql: Mapping[str, DsqlInfo] = field(default_factory=dict)  # world name -> the created cluster

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(json.dumps(asdict(self)))  # a dataclass: a JSON object
        return document

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
            proxies={k: ProxyInfo(**v) for k, v in (data.get("proxies") or {}).items()},
            dsql={k: DsqlInfo(**v) for k, v in (data.get("dsql") or {}).items()},
        )


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


@contextmanager
def _fixed_access_key(pair: tuple[str, str] | None) -> Iterator[None]:
    """Make moto's next access key ``pair`` (id, secret) instead of a random one."""
    if pair is None:
        yield
        return
    from moto.iam import models

    with _ID_PATCH_LOCK:
        saved = models.generate_access_key_id_from_account_id, models.random_alphanumeric
        models.generate_access_key_id_from_account_id = lambda *args, **kwargs: pair[0]
        models.random_alphanumeric = lambda *args, **kwargs: pair[1]
        try:
            yield
        finally:
            models.generate_access_key_id_from_account_id, models.random_alphanumeric = saved


def _point_instance_at(account: str, region: str, identifier: str, host: str) -> None:
    """Make moto report ``host`` as the instance's endpoint address (the port is set at create),
    and give the instance a resource id of its own."""

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
    instance._rdsvend_local_host = host  # type: ignore[attr-defined]  # read by the local class's address above
    instance.__class__ = local_cls
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    instance.dbi_resource_id = "db-" + "".join(_secrets.choice(alphabet) for _ in range(26))


_LOCAL_INSTANCE_CLASSES: dict[type, type] = {}


def _trust_document(principal: Mapping[str, Any]) -> str:
    """A role's trust: the principals may assume it (AWS principals also with a source identity,
    which the signer sets: the trust must allow ``sts:SetSourceIdentity`` for that)."""
    actions = ["sts:AssumeRole", "sts:SetSourceIdentity"] if "AWS" in principal else "sts:AssumeRole"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": dict(principal), "Action": actions}],
    })


ADMINISTRATOR_ACCESS = "arn:aws:iam::aws:policy/AdministratorAccess"


def _org_access_role(account: str, management: str, partition: str = "aws") -> None:
    """The role AWS Organizations creates in every account it creates: trusted by the management
    account, with AdministratorAccess attached. (moto makes it in a backend IAM does not read, and
    without a policy; the local AWS enforces IAM, so it must be the real one.)"""
    from moto.iam.models import iam_backends

    backend = iam_backends[account][partition]
    if not any(r.name == ORG_ACCESS_ROLE for r in backend.get_roles()):
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"AWS": f"arn:aws:iam::{management}:root"}}]}
        backend.create_role(role_name=ORG_ACCESS_ROLE, assume_role_policy_document=json.dumps(trust), path="/",
                            permissions_boundary=None, description="", tags=[], max_session_duration="3600")
    provide_aws_managed_policy(account, ADMINISTRATOR_ACCESS)
    backend.attach_role_policy(ADMINISTRATOR_ACCESS, ORG_ACCESS_ROLE)


def seed_world(world: World, endpoint_url: str, *, db_host: str, db_port: int | Mapping[str, int],
               master_password: str, known_keys: Mapping[str, tuple[str, str]] | None = None,
               proxy_ports: Mapping[str, int] | None = None) -> SeededWorld:
    """Create the world in the moto server at ``endpoint_url`` through its public API.

    ``db_port`` is where the local PostgreSQL of each database listens (one port for all, or
    a mapping from instance identifier to port); the instances' endpoints say so.
    ``known_keys`` (``ACCOUNT/USER`` -> key id and secret) gives users the access keys of a
    previous run (devtools.local.last_run), so the shells that hold them stay valid.
    ``proxy_ports``: RDS Proxy name -> where its front will listen.
    """
    region = world.region
    org = world.organization
    sessions = AccountSessions(endpoint_url, region, org.management_account)
    root_id, scp_ids, unit_ids = _create_organization(world, sessions.client("organizations", org.management_account))
    instances, directories = _create_instances(world, sessions, db_host=db_host, db_port=db_port,
                                               master_password=master_password)
    proxies = create_proxies(world, sessions, host=db_host, ports=proxy_ports or {},
                             dbnames={i: inst.dbname for i, inst in instances.items()})
    dsql = _create_dsql_clusters(world, sessions)
    # Users first: the roles' trust policies name some of them (AWS refuses unknown principals).
    callers = _create_users(world, sessions, known_keys or {})
    _create_roles(world, sessions, instances, dsql, proxies)

    # What the Lambda would run as: its execution role, assumed in the service account
    # (as Lambda does), for as long as STS allows.
    execution = service_assumes(world.execution_role_arn, "rdsvend-local-function", region, duration=43200)
    return SeededWorld(
        endpoint_url=endpoint_url, region=region, org_id=org.id, management_account=org.management_account,
        root_id=root_id, units=unit_ids, scps=scp_ids, callers=callers, execution=execution,
        instances=instances, signer_role_arn=world.signer_role_arn, directories=directories, dsql=dsql,
        proxies=proxies)


def _create_organization(world: World, orgs: Any) -> tuple[str, dict[str, str], dict[str, str]]:
    """The organization with the world's ids: its member accounts (each with the role AWS
    Organizations creates), SCPs and units; the root's id, and the SCPs' and units' ids by name."""
    org = world.organization
    with _fixed_moto_ids(org_id=org.id):
        orgs.create_organization(FeatureSet="ALL")
    root_id: str = orgs.list_roots()["Roots"][0]["Id"]
    for account in world.member_accounts():
        with _fixed_moto_ids(account_id=account.id):
            status = orgs.create_account(AccountName=account.name, Email=f"{account.name}@rdsvend.local")
        created = status["CreateAccountStatus"]["AccountId"]
        if created != account.id:  # pragma: no cover - moto changed how it draws ids
            raise RuntimeError(f"moto created account {created}, not {account.id}")
        _org_access_role(account.id, org.management_account)

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
    return root_id, scp_ids, unit_ids


def _create_instances(world: World, sessions: AccountSessions, *, db_host: str, db_port: int | Mapping[str, int],
                      master_password: str) -> tuple[dict[str, InstanceInfo], dict[str, str]]:
    """Every account's directories and DB instances, the instances' endpoints pointed at the
    local databases; what RDS says of each instance, and the directories' ids by name."""
    region = world.region
    instances: dict[str, InstanceInfo] = {}
    directories: dict[str, str] = {}
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
    return instances, directories


def _create_users(world: World, sessions: AccountSessions,
                  known_keys: Mapping[str, tuple[str, str]]) -> dict[str, Keys]:
    """Every account's IAM users with their inline policies and access keys (a previous run's
    when ``known_keys`` has them); the keys of the world's callers, by part (allowed, denied,
    operator, approver)."""
    parts = {"allowed": world.allowed_caller, "denied": world.denied_caller}
    if world.operator is not None:
        parts["operator"] = world.operator
    if world.approver_caller is not None:
        parts["approver"] = world.approver_caller
    callers: dict[str, Keys] = {}
    for account in world.accounts.values():
        iam = sessions.client("iam", account.id)
        for user in account.users.values():
            arn = iam.create_user(UserName=user.name)["User"]["Arn"]
            for name, doc in user.policies.items():
                iam.put_user_policy(UserName=user.name, PolicyName=name, PolicyDocument=json.dumps(doc))
            if user.access_key:
                with _fixed_access_key(known_keys.get(f"{account.id}/{user.name}")):
                    key = iam.create_access_key(UserName=user.name)["AccessKey"]
                for part, ref in parts.items():
                    if (ref.account, ref.user) == (account.id, user.name):
                        callers[part] = Keys(key["AccessKeyId"], key["SecretAccessKey"], arn, account.id)
    return callers


def _create_roles(world: World, sessions: AccountSessions, instances: Mapping[str, InstanceInfo],
                  dsql: Mapping[str, DsqlInfo], proxies: Mapping[str, ProxyInfo]) -> None:
    """Every account's roles: trust, inline and managed policies, and the connect policies built
    from what RDS and the DSQL API gave the databases (resource ids, cluster ARNs)."""
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
                arns = [_connect_arn(db, user, instances, proxies) for db in role.rds_connect
                        for user in account.databases[account.proxies[db].target if db in account.proxies
                                                      else db].iam_users()]
                document = {"Version": "2012-10-17", "Statement": [
                    {"Sid": "ConnectAsDeclaredUsers", "Effect": "Allow", "Action": "rds-db:connect",
                     "Resource": arns}]}
                policy_arn = iam.create_policy(PolicyName=f"{role.name}-rds-connect",
                                               PolicyDocument=json.dumps(document))["Policy"]["Arn"]
                iam.attach_role_policy(RoleName=role.name, PolicyArn=policy_arn)
            if role.dsql_connect:
                _attach_dsql_connect(iam, role.name, [dsql[c].arn for c in role.dsql_connect])


def _connect_arn(name: str, user: str, instances: Mapping[str, InstanceInfo], proxies: Mapping[str, ProxyInfo]) -> str:
    """The dbuser ARN of ``user`` at the instance or proxy ``name`` (a proxy's: its ``prx-`` id)."""
    return proxies[name].dbuser_arn(user) if name in proxies else instances[name].dbuser_arn(user)


def _create_dsql_clusters(world: World, sessions: AccountSessions) -> dict[str, DsqlInfo]:
    """Each DSQL cluster of the world, created in its account's DSQL API and read until ACTIVE."""
    created: dict[str, DsqlInfo] = {}
    for account, spec in world.dsql_clusters():
        client = sessions.client("dsql", account.id)
        answer = client.create_cluster(deletionProtectionEnabled=False, tags={"Name": spec.name},
                                       clientToken=f"rdsvend-local-{spec.name}")
        client.get_cluster(identifier=answer["identifier"])  # moto: CREATING, then ACTIVE when read
        created[spec.name] = DsqlInfo(spec.name, answer["identifier"], account.id, world.region, answer["arn"])
    return created


def _attach_dsql_connect(iam: Any, role: str, arns: list[str]) -> None:
    """dsql:DbConnect and dsql:DbConnectAdmin on exactly these clusters (a managed policy)."""
    document = {"Version": "2012-10-17", "Statement": [
        {"Sid": "ConnectToDeclaredClusters", "Effect": "Allow", "Action": ["dsql:DbConnect", "dsql:DbConnectAdmin"],
         "Resource": arns}]}
    created = iam.create_policy(PolicyName=f"{role}-dsql-connect", PolicyDocument=json.dumps(document))
    policy_arn = created["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=policy_arn)
