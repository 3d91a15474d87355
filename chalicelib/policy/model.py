"""The access policy as frozen dataclasses. Built only by :mod:`loader`."""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from chalicelib.aws.arn import partition_of_region  # re-exported: the policy model speaks of partitions

__all__ = ["DbUser", "Database", "ProxyTarget", "Conditions", "Rule", "CanarySettings", "AccessPolicy",
           "partition_of_region", "DSQL_ADMIN", "DSQL_ADMIN_ACTION", "DSQL_CONNECT_ACTION", "DEFAULT_TTL_SECONDS",
           "MAX_TTL_SECONDS"]

#: Aurora DSQL's built-in administrator role, the only one signed with ``DbConnectAdmin``.
DSQL_ADMIN = "admin"
DSQL_ADMIN_ACTION = "DbConnectAdmin"
DSQL_CONNECT_ACTION = "DbConnect"
#: A DSQL token's lifetime when the rule names none, and the most rdsvend signs for (DSQL
#: itself accepts up to a week).
DEFAULT_TTL_SECONDS = 900
MAX_TTL_SECONDS = 3600

Auth = Literal["iam", "kerberos", "password"]
Tier = Literal["service-user", "service-admin"]
Kind = Literal["instance", "cluster", "proxy"]
Rotation = Literal["single-user", "alternating-users"]
TargetKind = Literal["instance", "cluster"]
TargetAuth = Literal["iam", "secrets"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class DbUser:
    name: str
    auth: Auth
    tier: Tier | None = None
    #: ``auth: password`` only: the Secrets Manager secret ARN holding its password
    secret: str | None = None
    #: ``auth: password`` only: ``single-user`` | ``alternating-users``
    rotation: Rotation | None = None

    @property
    def vendable(self) -> bool:
        """Only ``auth: iam`` users are ever given a token."""
        return self.auth == "iam"


@dataclass(frozen=True)
class ProxyTarget:
    """What an RDS Proxy stands in front of, and how the proxy logs in to it.

    ``auth``: ``iam`` (the proxy's ``DefaultAuthScheme`` is ``IAM_AUTH``: its role signs a token
    for the target, so the role needs ``rds-db:connect`` on the target's resource id) or
    ``secrets`` (the proxy reads each user's password from Secrets Manager with its role).
    """

    kind: TargetKind
    identifier: str  # the DB instance or cluster identifier
    auth: TargetAuth

    @property
    def key(self) -> str:
        """The policy key that names it: ``target_instance`` or ``target_cluster``."""
        return f"target_{self.kind}"


@dataclass(frozen=True)
class Database:
    name: str
    engine: Literal["postgres", "mysql", "mariadb", "dsql"]  # mysql and mariadb: the MySQL family
    region: str
    kind: Kind  # which of instance | cluster | proxy the policy named
    identifier: str  # the DB instance / cluster / proxy identifier
    users: Mapping[str, DbUser]
    host: str | None = None  # None: resolve from RDS
    port: int | None = None  # None: resolve from RDS
    dbname: str | None = None
    signer_role: str | None = None
    #: the 12-digit account the database lives in: ``account``, else the signer role's, else
    #: the service's own when the loader was told it; None means "the service's own account"
    account: str | None = None
    #: the role to read this database's account through (explicit ``reader_role``, or
    #: ``defaults.reader_role_name`` in ``account``); see :meth:`AccessPolicy.reader_role_for`
    reader_role: str | None = None
    reader_role_explicit: bool = False
    resource_id: str | None = None  # db-... / cluster-... / prx-...: with host and port, no RDS read
    #: ``proxy`` databases only: the instance or cluster behind the proxy (None otherwise)
    target: ProxyTarget | None = None

    @property
    def default_port(self) -> int:
        return 3306 if self.engine in ("mysql", "mariadb") else 5432

    @property
    def is_dsql(self) -> bool:
        """An Aurora DSQL cluster (``identifier`` is its cluster id): nothing is read from RDS."""
        return self.engine == "dsql"

    def dsql_action(self, db_user: str) -> str:
        """``DbConnectAdmin`` for ``admin``, ``DbConnect`` for every other role of a DSQL cluster."""
        return DSQL_ADMIN_ACTION if db_user == DSQL_ADMIN else DSQL_CONNECT_ACTION

    @property
    def partition(self) -> str:
        """The AWS partition of the database's ARNs: its roles', else its region's."""
        for arn in (self.signer_role, self.reader_role):
            if arn:
                return arn.split(":", 2)[1]
        return partition_of_region(self.region)

    def reader_role_for(self, own_account: str | None) -> str | None:
        """The role to assume to read this database's account (RDS, its signer role's IAM), or
        None to read it with one's own credentials.

        An explicit ``reader_role`` is always used. The default (``defaults.reader_role_name``)
        only when the credentials at hand (``own_account``) are known to be in another account.
        """
        if self.reader_role_explicit:
            return self.reader_role
        if self.reader_role is None or self.account is None or own_account is None:
            return None
        return self.reader_role if own_account != self.account else None

    def behind(self) -> Database | None:
        """A proxy's target as a database of its own (the target's kind and identifier, this
        database's region, account and users): what to describe for leg 2. None for others."""
        if self.target is None:
            return None
        return replace(self, kind=self.target.kind, identifier=self.target.identifier, host=None, port=None,
                       resource_id=None, target=None)

    @property
    def endpoint_declared(self) -> bool:
        """Host, port and resource id all given: nothing needs to be read from RDS to vend."""
        return self.host is not None and self.port is not None and self.resource_id is not None


@dataclass(frozen=True)
class Conditions:
    org_ids: tuple[str, ...] | None = None
    source_ips: tuple[Network, ...] | None = None

    @property
    def empty(self) -> bool:
        return self.org_ids is None and self.source_ips is None


@dataclass(frozen=True)
class Rule:
    id: str
    effect: Literal["allow", "deny"]
    principals: tuple[str, ...]
    databases: tuple[str, ...]
    db_users: tuple[str, ...]
    conditions: Conditions = field(default_factory=Conditions)
    #: ``grant: required``: the rule allows only a caller holding a live grant (chalicelib.grants)
    grant_required: bool = False
    #: principal patterns that may approve, deny or revoke grants under this rule
    approvers: tuple[str, ...] = ()
    #: the longest grant a caller may ask for under this rule
    max_grant_seconds: int = 3600
    #: how long a DSQL token vended under this rule lasts (RDS tokens always last 900 s)
    ttl_seconds: int = DEFAULT_TTL_SECONDS


@dataclass(frozen=True)
class CanarySettings:
    timeout_seconds: float = 10.0
    concurrency: int = 16
    ssl_root_cert: str | None = None  # None: the RDS bundle shipped with rdsvend


@dataclass(frozen=True)
class AccessPolicy:
    databases: Mapping[str, Database]
    rules: tuple[Rule, ...]
    canary: CanarySettings = field(default_factory=CanarySettings)
    source: str = "<policy>"
    version: int = 1
    reader_role_name: str | None = None  # defaults.reader_role_name

    def reader_role_for(self, database: Database, own_account: str | None) -> str | None:
        """See :meth:`Database.reader_role_for`."""
        return database.reader_role_for(own_account)

    def rule(self, rule_id: str | None) -> Rule | None:
        """The rule with this id, or None."""
        return next((r for r in self.rules if r.id == rule_id), None) if rule_id else None

    def targets(self) -> list[tuple[Database, DbUser]]:
        """Every declared (database, db user) pair, in file order: what the canary checks."""
        return [(db, user) for db in self.databases.values() for user in db.users.values()]
