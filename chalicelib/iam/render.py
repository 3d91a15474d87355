"""The least-privilege signer policy for an access policy (``rdsvend policy render``).

:func:`render_policies(policy, client_for) <render_policies>` resolves every database's
resource id through RDS (``DescribeDBInstances`` -> ``DbiResourceId``, ``DescribeDBClusters``
-> ``DbClusterResourceId``, ``DescribeDBProxies`` -> the proxy's ``prx-`` id) and returns:

- one IAM policy per signer (databases naming the same ``signer_role`` share one; databases
  with none are signed by rdsvend's own function role), allowing ``rds-db:connect`` on
  exactly the dbuser ARNs of that signer's ``auth: iam`` users, nothing else;
- the SCP statement that allows ``rds-db:connect`` on every one of those ARNs (for an
  allow-list SCP at each organization level);
- for Aurora DSQL clusters (nothing read: the ARN is built from the cluster id and the
  database's account), ``dsql:DbConnectAdmin`` on the clusters whose ``admin`` is declared and
  ``dsql:DbConnect`` on those with custom roles, in the signer's policy and as SCP statements.

A database RDS does not know, or one whose resource id RDS does not give, is an error: a
name-based ARN is never rendered (IAM would never match it). ``client_for(region)`` returns a
boto3 RDS client (``AWS_ENDPOINT_URL`` points it at moto or the local stack).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.aws.arn import dsql_cluster_arn
from chalicelib.aws.errors import aws_error
from chalicelib.aws.rds_resource import RdsResource, describe_resource
from chalicelib.errors import IamFetchError
from chalicelib.iam.proxy_leg import ProxyLeg, proxy_facts, proxy_leg
from chalicelib.iam.rdsdb import CONNECT_ACTION, dbuser_arn, is_resource_id
from chalicelib.policy.model import AccessPolicy, Database

__all__ = ["ResolvedDatabase", "DsqlGrant", "RenderedPolicies", "render_policies", "render_proxy_roles",
           "resolve_database", "describe_database", "dsql_grants", "dsql_statements"]

DEFAULT_SIGNER = "rdsvend function role"


@dataclass(frozen=True)
class ResolvedDatabase:
    database: str
    partition: str
    account: str
    region: str
    resource_id: str
    arns: tuple[str, ...]  # one per auth: iam user, in file order


@dataclass(frozen=True)
class DsqlGrant:
    """One DSQL action a signer needs on one cluster ARN."""

    database: str
    signer: str  # signer role ARN, or DEFAULT_SIGNER
    action: str  # dsql:DbConnect | dsql:DbConnectAdmin
    arn: str


@dataclass(frozen=True)
class RenderedPolicies:
    databases: tuple[ResolvedDatabase, ...]
    signer_policies: Mapping[str, dict[str, Any]]  # signer role ARN (or DEFAULT_SIGNER) -> IAM policy
    scp_statement: dict[str, Any]  # empty when no RDS database has an auth: iam user
    dsql: tuple[DsqlGrant, ...] = ()

    @property
    def all_arns(self) -> tuple[str, ...]:
        return tuple(arn for db in self.databases for arn in db.arns)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "signer_policies": [
                {"signer": signer, "policy": doc} for signer, doc in self.signer_policies.items()
            ],
        }
        if self.scp_statement:
            out["scp_statement"] = self.scp_statement
            out["dbuser_arns"] = list(self.all_arns)
        if self.dsql:
            out["dsql_scp_statements"] = dsql_statements(self.dsql, "AllowRdsvendDsql")
            out["dsql_cluster_arns"] = sorted({g.arn for g in self.dsql})
        return out


def dsql_grants(policy: AccessPolicy) -> list[DsqlGrant]:
    """What each signer needs on the DSQL clusters it signs for (no AWS call: the ARN is built
    from the cluster id and the database's account, which must then be known)."""
    grants: list[DsqlGrant] = []
    for database in policy.databases.values():
        if not database.is_dsql:
            continue
        if database.account is None:
            raise IamFetchError(f"database '{database.name}': the account of DSQL cluster '{database.identifier}' "
                                "is unknown: set 'account' or 'signer_role' in its policy entry", service="dsql")
        arn = dsql_cluster_arn(database.region, database.account, database.identifier, database.partition)
        actions = sorted({database.dsql_action(u.name) for u in database.users.values() if u.vendable})
        grants.extend(DsqlGrant(database.name, database.signer_role or DEFAULT_SIGNER, f"dsql:{action}", arn)
                      for action in actions)
    return grants


def dsql_statements(grants: tuple[DsqlGrant, ...] | list[DsqlGrant], sid: str) -> list[dict[str, Any]]:
    """One Allow statement per DSQL action, on exactly the cluster ARNs that need it."""
    by_action: dict[str, set[str]] = {}
    for grant in grants:
        by_action.setdefault(grant.action, set()).add(grant.arn)
    return [{"Sid": sid + action.split(":")[1], "Effect": "Allow", "Action": action, "Resource": sorted(arns)}
            for action, arns in sorted(by_action.items())]


def describe_database(database: Database, client: Any, searched: Callable[[], Any] | None = None) -> RdsResource:
    """What RDS says about the database's instance, cluster or proxy, or :class:`IamFetchError`.

    ``searched()``, asked only when RDS cannot show the resource, says where the read looked
    (:class:`chalicelib.aws.reader.SearchedAs`)."""
    try:
        return describe_resource(client, database)
    except Exception as exc:
        error = aws_error(exc)
        if error is not None and error.kind != "no_answer":
            where = searched() if searched is not None else None
            detail = f"; {where}" if where is not None else ""
            advice = f": {where.advice}" if where is not None and getattr(where, "advice", None) else ""
            raise IamFetchError(
                f"database '{database.name}': rds has no {database.kind} '{database.identifier}' "
                f"({error.code}{detail}){advice}", service="rds", code=error.code,
            ) from exc
        if error is None and not isinstance(exc, (IndexError, KeyError)):  # those: a malformed answer
            raise
        raise IamFetchError(
            f"database '{database.name}': cannot describe {database.kind} '{database.identifier}' "
            f"({type(exc).__name__})", service="rds",
        ) from exc


def resolve_database(database: Database, client: Any,
                     searched: Callable[[], Any] | None = None) -> tuple[str, str, str]:
    """``(partition, account, resource_id)`` of the database's instance, cluster or proxy
    (``searched``: see :func:`describe_database`)."""
    resource = describe_database(database, client, searched)
    arn = resource.arn or ""
    parts = arn.split(":")
    if len(parts) < 6 or not parts[4]:
        raise IamFetchError(f"database '{database.name}': rds gave no ARN for '{database.identifier}'", service="rds")
    rid = resource.resource_id or ""
    if not is_resource_id(rid):
        raise IamFetchError(
            f"database '{database.name}': rds gave no resource id for {database.kind} "
            f"'{database.identifier}' (got '{rid}')", service="rds",
        )
    return parts[1], parts[4], rid


def render_policies(policy: AccessPolicy, client_for: Callable[[str], Any], *,
                    rds_for: Callable[[Database], Any] | None = None,
                    searched: Callable[[Database], Any] | None = None) -> RenderedPolicies:
    """Resolve resource ids and build the signer policies and the SCP statement.

    A database whose policy entry gives ``resource_id`` and whose account is known is not read
    from RDS. ``rds_for(database)``, when given, is the RDS client for the database's account
    (through its reader role); otherwise ``client_for(region)``. ``searched(database)`` says
    where a read looked, for the message when RDS cannot show a database."""
    resolved: list[ResolvedDatabase] = []
    by_signer: dict[str, list[str]] = {}
    for database in policy.databases.values():
        users = [u.name for u in database.users.values() if u.vendable]
        if not users or database.is_dsql:
            continue
        if database.resource_id and database.account:
            partition, account, rid = database.partition, database.account, database.resource_id
        else:
            client = rds_for(database) if rds_for is not None else client_for(database.region)
            where = (lambda db=database: searched(db)) if searched is not None else None
            partition, account, rid = resolve_database(database, client, where)
        arns = tuple(dbuser_arn(database.region, account, rid, u, partition) for u in users)
        resolved.append(ResolvedDatabase(database.name, partition, account, database.region, rid, arns))
        by_signer.setdefault(database.signer_role or DEFAULT_SIGNER, []).extend(arns)
    dsql = dsql_grants(policy)
    if not resolved and not dsql:
        raise IamFetchError("no database declares an 'auth: iam' user", service="rds")
    signers = dict.fromkeys([*by_signer, *(g.signer for g in dsql)])
    signer_policies = {
        signer: {
            "Version": "2012-10-17",
            "Statement": [
                *([{"Sid": "RdsvendConnect", "Effect": "Allow", "Action": CONNECT_ACTION,
                    "Resource": sorted(dict.fromkeys(by_signer[signer]))}] if signer in by_signer else []),
                *dsql_statements([g for g in dsql if g.signer == signer], "RdsvendDsql"),
            ],
        }
        for signer in signers
    }
    scp_statement = {
        "Sid": "AllowRdsvendConnect",
        "Effect": "Allow",
        "Action": CONNECT_ACTION,
        "Resource": sorted({arn for db in resolved for arn in db.arns}),
    } if resolved else {}
    return RenderedPolicies(tuple(resolved), signer_policies, scp_statement, tuple(dsql))


def render_proxy_roles(policy: AccessPolicy, client_for: Callable[[str], Any], *,
                       rds_for: Callable[[Database], Any] | None = None,
                       searched: Callable[[Database], Any] | None = None) -> tuple[ProxyLeg, ...]:
    """Leg 2 of every proxy database with an ``auth: iam`` user: what its proxy's role needs
    to reach the target (:mod:`chalicelib.iam.proxy_leg`). Reads the proxy
    (``DescribeDBProxies``: its role and secrets) and the target's resource id
    (``DescribeDBInstances`` / ``DescribeDBClusters``); arguments as :func:`render_policies`."""
    legs: list[ProxyLeg] = []
    for database in policy.databases.values():
        target = database.behind()
        if target is None or not any(u.vendable for u in database.users.values()):
            continue
        client = rds_for(database) if rds_for is not None else client_for(database.region)
        where = (lambda db=database: searched(db)) if searched is not None else None
        proxy = describe_database(database, client, where)
        partition, account, target_rid = resolve_database(target, client, where)
        legs.append(proxy_leg(database, proxy_facts(proxy.raw), partition=partition, account=account,
                              target_resource_id=target_rid))
    return tuple(legs)
