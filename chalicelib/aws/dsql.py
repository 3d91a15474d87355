"""What the Aurora DSQL API says about a cluster, and where DSQL is offered.

:func:`get_cluster` reads one cluster (``GetCluster``), :func:`list_clusters` every cluster of a
region (``ListClusters``, then ``GetCluster`` each); both return :class:`DsqlCluster`. Errors are
botocore's own (classify them with :func:`chalicelib.aws.errors.aws_error`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.aws.arn import dsql_host

__all__ = ["DsqlCluster", "cluster_from_item", "get_cluster", "list_clusters"]


@dataclass(frozen=True)
class DsqlCluster:
    """One DSQL cluster: ``status`` is ``ACTIVE`` when it takes logins."""

    identifier: str
    arn: str
    status: str
    region: str
    host: str  # the public endpoint, ID.dsql.REGION.on.aws
    deletion_protection: bool | None = None

    @property
    def account(self) -> str:
        return self.arn.split(":", 5)[4]

    @property
    def active(self) -> bool:
        return self.status == "ACTIVE"


def cluster_from_item(item: Mapping[str, Any], region: str) -> DsqlCluster:
    identifier = str(item["identifier"])
    return DsqlCluster(identifier=identifier, arn=str(item["arn"]), status=str(item.get("status") or "UNKNOWN"),
                       region=region, host=dsql_host(identifier, region),
                       deletion_protection=item.get("deletionProtectionEnabled"))


def get_cluster(client: Any, identifier: str, region: str) -> DsqlCluster:
    """``GetCluster``: the cluster, or botocore's ``ResourceNotFoundException``."""
    return cluster_from_item(client.get_cluster(identifier=identifier), region)


def list_clusters(client: Any, region: str, *, limit: int = 1000) -> list[DsqlCluster]:
    """Every cluster of the region (at most ``limit``), each read with ``GetCluster``."""
    found: list[DsqlCluster] = []
    token: str | None = None
    while len(found) < limit:
        page = client.list_clusters(**({"nextToken": token} if token else {}))
        for summary in page.get("clusters", []):
            found.append(get_cluster(client, str(summary["identifier"]), region))
        token = page.get("nextToken")
        if not token:
            break
    return found[:limit]
