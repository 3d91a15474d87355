"""RDS Proxy set-ups the proxy tests share: a proxy database of the access policy (built with
:mod:`tests.support.policies`), and moto's RDS with instances and proxies in front of them.

:func:`proxy_database` is by default a PostgreSQL proxy in front of instance orders-prod (leg 2
with IAM), :func:`reports_proxy` a MySQL one in front of cluster reports-aurora (leg 2 with
secrets); each test adds what it is about (a signer role, a dbname, more users).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import boto3

from tests.support.policies import database

__all__ = ["create_cluster", "create_instance", "create_proxy", "prx_id", "proxy_database", "proxy_subnets",
           "reports_proxy"]


def proxy_database(name: str = "orders-proxy", *, proxy: str | None = None, engine: str = "postgres",
                   region: str = "us-east-1", target_kind: str = "instance", target: str = "orders-prod",
                   target_auth: str = "iam", users: str = "orders_app: {auth: iam}", extra: str = "") -> str:
    """A ``proxy`` database (``proxy``, by default ``name``) in front of ``target`` (``target_kind``:
    ``instance`` or ``cluster``), leg 2 by ``target_auth``; ``extra``: more keys (``signer_role:``...)."""
    return database(name, engine=engine, region=region, kind="proxy", identifier=proxy, users=users,
                    extra=f"target_{target_kind}: {target}\ntarget_auth: {target_auth}\n{extra}")


def reports_proxy(extra: str = "") -> str:
    """A MySQL proxy in front of cluster reports-aurora, leg 2 with secrets, for ``reports_ro``."""
    return proxy_database("reports-proxy", engine="mysql", target_kind="cluster", target="reports-aurora",
                          target_auth="secrets", users="reports_ro: {auth: iam}", extra=extra)


def proxy_subnets(region: str) -> list[str]:
    """Two subnets (in two zones) of a new VPC: where moto's RDS creates a proxy."""
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{zone}")[
        "Subnet"]["SubnetId"] for i, zone in ((1, "a"), (2, "b"))]


def create_instance(rds: Any, identifier: str, engine: str = "postgres", version: str | None = None) -> Any:
    """An RDS instance with IAM database authentication on; its description."""
    return rds.create_db_instance(
        DBInstanceIdentifier=identifier, Engine=engine, DBInstanceClass="db.t3.micro", MasterUsername="admin",
        MasterUserPassword="not-a-real-one", AllocatedStorage=20, EnableIAMDatabaseAuthentication=True,
        **({"EngineVersion": version} if version else {}))["DBInstance"]


def create_cluster(rds: Any, identifier: str, engine: str = "aurora-postgresql") -> Any:
    """An Aurora cluster with IAM database authentication on; its description."""
    return rds.create_db_cluster(DBClusterIdentifier=identifier, Engine=engine, MasterUsername="admin",
                                 MasterUserPassword="not-a-real-one", EnableIAMDatabaseAuthentication=True)["DBCluster"]


def create_proxy(rds: Any, name: str, role_arn: str, subnets: Sequence[str], *, family: str = "POSTGRESQL",
                 secret: str | None = None, user: str | None = None, instances: Sequence[str] = ()) -> Any:
    """An RDS Proxy requiring IAM from its callers (``secret``/``user``: its auth's secret and the
    user it is for), with ``instances`` registered as its targets; its description."""
    auth = {"AuthScheme": "SECRETS", "IAMAuth": "REQUIRED", **({"UserName": user} if user else {}),
            **({"SecretArn": secret} if secret else {})}
    proxy = rds.create_db_proxy(DBProxyName=name, EngineFamily=family, RoleArn=role_arn,
                                VpcSubnetIds=list(subnets), Auth=[auth])["DBProxy"]
    if instances:
        rds.register_db_proxy_targets(DBProxyName=name, DBInstanceIdentifiers=list(instances))
    return proxy


def prx_id(proxy: Any) -> str:
    """The proxy's resource id (``prx-...``), the last part of its ARN."""
    return str(proxy["DBProxyArn"]).rsplit(":", 1)[-1]
