"""The access policy as frozen dataclasses (SPEC 2). Built only by :mod:`loader`."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal, Mapping

__all__ = ["DbUser", "Database", "Conditions", "Rule", "CanarySettings", "AccessPolicy"]

Auth = Literal["iam", "kerberos", "password"]
Tier = Literal["service-user", "service-admin"]
Kind = Literal["instance", "cluster", "proxy"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class DbUser:
    name: str
    auth: Auth
    tier: Tier | None = None

    @property
    def vendable(self) -> bool:
        """Only ``auth: iam`` users are ever given a token."""
        return self.auth == "iam"


@dataclass(frozen=True)
class Database:
    name: str
    engine: Literal["postgres", "mysql"]
    region: str
    kind: Kind  # which of instance | cluster | proxy the policy named
    identifier: str  # the DB instance / cluster / proxy identifier
    users: Mapping[str, DbUser]
    host: str | None = None  # None: resolve from RDS
    port: int | None = None  # None: resolve from RDS
    dbname: str | None = None
    signer_role: str | None = None

    @property
    def default_port(self) -> int:
        return 5432 if self.engine == "postgres" else 3306


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

    def targets(self) -> list[tuple[Database, DbUser]]:
        """Every declared (database, db user) pair, in file order: what the canary checks."""
        return [(db, user) for db in self.databases.values() for user in db.users.values()]
