"""What RDS says about one instance, cluster or proxy: the one Describe call and its parsing.

:func:`describe_resource` makes the Describe call a policy's database needs and
:func:`resource_from_item` turns one item of a ``DescribeDBInstances`` /
``DescribeDBClusters`` / ``DescribeDBProxies`` answer into an :class:`RdsResource`. The
vending function, the canary, ``rdsvend policy render``, the doctor and ``rdsvend discover``
all read RDS through these two. Errors are botocore's own (classify them with
:func:`chalicelib.aws.errors.aws_error`); an answer without items raises ``IndexError``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["DomainMembership", "RdsResource", "describe_resource", "resource_from_item", "DESCRIBE_OPERATION"]

class RdsName(Protocol):
    """How RDS names a database: which kind of resource, and its identifier (a policy's
    :class:`~chalicelib.policy.model.Database` is one)."""

    @property
    def kind(self) -> str: ...

    @property
    def identifier(self) -> str: ...


#: The Describe operation for each kind of database.
DESCRIBE_OPERATION = {"instance": "DescribeDBInstances", "cluster": "DescribeDBClusters",
                      "proxy": "DescribeDBProxies"}


@dataclass(frozen=True)
class DomainMembership:
    """An Active Directory domain the instance or cluster is joined to (Kerberos)."""

    domain: str
    status: str
    fqdn: str | None = None
    iam_role_name: str | None = None


@dataclass(frozen=True)
class RdsResource:
    """What RDS says about one instance, cluster or proxy.

    ``iam_auth_enabled`` is None when RDS did not say; ``port`` is None for a proxy (RDS does
    not report it: the engine's default port applies); ``raw`` is the Describe item itself.
    """

    kind: str
    identifier: str
    status: str
    iam_auth_enabled: bool | None
    host: str | None
    port: int | None
    resource_id: str | None  # DbiResourceId, DbClusterResourceId or the proxy's prx- id
    arn: str | None
    engine: str = "postgres"
    domains: tuple[DomainMembership, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def account(self) -> str | None:
        parts = (self.arn or "").split(":")
        return parts[4] if len(parts) > 5 and parts[4] else None

    @property
    def partition(self) -> str:
        parts = (self.arn or "").split(":")
        return parts[1] if len(parts) > 5 and parts[1] else "aws"


def describe_resource(client: Any, database: RdsName) -> RdsResource:
    """One Describe call for the database's instance, cluster or proxy (raises botocore errors)."""
    if database.kind == "instance":
        item = client.describe_db_instances(DBInstanceIdentifier=database.identifier)["DBInstances"][0]
    elif database.kind == "cluster":
        item = client.describe_db_clusters(DBClusterIdentifier=database.identifier)["DBClusters"][0]
    else:
        item = client.describe_db_proxies(DBProxyName=database.identifier)["DBProxies"][0]
    return resource_from_item(database.kind, item)


def resource_from_item(kind: str, item: Mapping[str, Any]) -> RdsResource:
    """An :class:`RdsResource` from one Describe item (``kind``: instance, cluster or proxy)."""
    iam = item.get("IAMDatabaseAuthenticationEnabled")
    iam_auth = bool(iam) if iam is not None else None
    if kind == "instance":
        endpoint = item.get("Endpoint") or {}
        return RdsResource(
            kind="instance", identifier=str(item.get("DBInstanceIdentifier", "")),
            status=str(item.get("DBInstanceStatus") or "unknown"), iam_auth_enabled=iam_auth,
            host=endpoint.get("Address"), port=endpoint.get("Port"), resource_id=item.get("DbiResourceId"),
            arn=item.get("DBInstanceArn"), engine=str(item.get("Engine") or ""),
            domains=_domains(item.get("DomainMemberships")), raw=item,
        )
    if kind == "cluster":
        return RdsResource(
            kind="cluster", identifier=str(item.get("DBClusterIdentifier", "")),
            status=str(item.get("Status") or "unknown"), iam_auth_enabled=iam_auth,
            host=item.get("Endpoint"), port=item.get("Port"), resource_id=item.get("DbClusterResourceId"),
            arn=item.get("DBClusterArn"), engine=str(item.get("Engine") or ""),
            domains=_domains(item.get("DomainMemberships")), raw=item,
        )
    arn = item.get("DBProxyArn") or None
    last = arn.rsplit(":", 1)[-1] if isinstance(arn, str) else ""
    auth = [a for a in item.get("Auth") or () if isinstance(a, Mapping)]
    proxy_iam = any(str(a.get("IAMAuth", "DISABLED")).upper() in ("REQUIRED", "ENABLED") for a in auth)
    return RdsResource(
        kind="proxy", identifier=str(item.get("DBProxyName", "")), status=str(item.get("Status") or "unknown"),
        iam_auth_enabled=proxy_iam if auth else None, host=item.get("Endpoint"), port=None,
        resource_id=last if last.startswith("prx-") else None, arn=arn,
        engine=str(item.get("EngineFamily") or ""), raw=item,
    )


def _domains(raw: Any) -> tuple[DomainMembership, ...]:
    return tuple(
        DomainMembership(domain=str(d.get("Domain", "")), status=str(d.get("Status", "")),
                         fqdn=d.get("FQDN"), iam_role_name=d.get("IAMRoleName"))
        for d in raw or () if isinstance(d, Mapping)
    )
