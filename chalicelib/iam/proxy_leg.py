"""Leg 2 of an RDS Proxy login: what the proxy's own role must be allowed to reach its target.

A caller's login through RDS Proxy crosses two IAM legs. Leg 1: the caller's token is signed
for the proxy's endpoint and allowed ``rds-db:connect`` on ``dbuser:prx-.../USER`` (the signer
policy :mod:`chalicelib.iam.render` builds). Leg 2: the proxy logs in to its target with its own
role (``RoleArn`` of ``DescribeDBProxies``):

- ``target_auth: iam`` (``DefaultAuthScheme: IAM_AUTH``): the role signs a token for the target,
  so it needs ``rds-db:connect`` on the target's ``dbuser:db-.../USER`` (``cluster-...`` for a
  cluster) for every user that goes through the proxy;
- ``target_auth: secrets``: the role reads each user's secret (``secretsmanager:GetSecretValue``
  on the ``SecretArn`` values of the proxy's ``Auth`` settings) and decrypts it
  (``kms:Decrypt`` through Secrets Manager only).

:func:`proxy_leg` builds both the requests the canary evaluates and the policy document
``rdsvend policy render`` prints for the role. Errors are :class:`IamFetchError`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.aws.arn import ROLE_ARN
from chalicelib.errors import IamFetchError
from chalicelib.iam.rdsdb import CONNECT_ACTION, dbuser_arn, is_resource_id
from chalicelib.policy.model import Database

__all__ = ["GET_SECRET_ACTION", "ProxyFacts", "ProxyLeg", "proxy_facts", "proxy_leg"]

GET_SECRET_ACTION = "secretsmanager:GetSecretValue"


@dataclass(frozen=True)
class ProxyFacts:
    """What ``DescribeDBProxies`` says about a proxy's own way in to its target."""

    role_arn: str | None
    default_auth_scheme: str | None  # IAM_AUTH | NONE | None (RDS did not say)
    secret_arns: tuple[str, ...]


def proxy_facts(item: Mapping[str, Any]) -> ProxyFacts:
    """The role, default auth scheme and secrets of one ``DescribeDBProxies`` item."""
    role = item.get("RoleArn")
    auth = [a for a in item.get("Auth") or () if isinstance(a, Mapping)]
    secrets = tuple(dict.fromkeys(str(a["SecretArn"]) for a in auth if a.get("SecretArn")))
    scheme = item.get("DefaultAuthScheme")
    return ProxyFacts(role_arn=str(role) if isinstance(role, str) and ROLE_ARN.fullmatch(role) else None,
                      default_auth_scheme=str(scheme) if scheme else None, secret_arns=secrets)


@dataclass(frozen=True)
class ProxyLeg:
    """Leg 2 of one proxy database: the proxy role, its target and what the role needs."""

    database: str
    proxy: str
    role_arn: str | None
    target_kind: str
    target: str
    target_resource_id: str
    mode: str  # iam | secrets
    requests: tuple[tuple[str, str], ...]  # (action, resource) the role must be allowed
    kms_statement: Mapping[str, Any] | None = None  # secrets: decrypt through Secrets Manager only

    def document(self) -> dict[str, Any]:
        """The identity policy to attach to the proxy's role."""
        by_action: dict[str, list[str]] = {}
        for action, resource in self.requests:
            by_action.setdefault(action, []).append(resource)
        sids = {CONNECT_ACTION: "ProxyConnectToTarget", GET_SECRET_ACTION: "ProxyReadUserSecrets"}
        statements: list[dict[str, Any]] = [
            {"Sid": sids[action], "Effect": "Allow", "Action": action, "Resource": sorted(dict.fromkeys(resources))}
            for action, resources in by_action.items()]
        if self.kms_statement is not None:
            statements.append(dict(self.kms_statement))
        return {"Version": "2012-10-17", "Statement": statements}

    def to_dict(self) -> dict[str, Any]:
        return {"leg": 2, "database": self.database, "proxy": self.proxy,
                "role": self.role_arn or "(the proxy's role: RDS did not name it)",
                f"target_{self.target_kind}": self.target, "target_resource_id": self.target_resource_id,
                "target_auth": self.mode, "policy": self.document()}


def proxy_leg(database: Database, facts: ProxyFacts, *, partition: str, account: str,
              target_resource_id: str) -> ProxyLeg:
    """Leg 2 of ``database`` (a proxy database) from its proxy's facts and its target's resource id."""
    target = database.target
    if target is None:
        raise ValueError(f"database '{database.name}' is not a proxy")
    if not is_resource_id(target_resource_id):
        raise IamFetchError(f"database '{database.name}': rds gave no resource id for {target.kind} "
                            f"'{target.identifier}' behind proxy '{database.identifier}'", service="rds")
    users = [u.name for u in database.users.values() if u.vendable]
    kms = None
    if target.auth == "iam":
        requests = tuple((CONNECT_ACTION, dbuser_arn(database.region, account, target_resource_id, user, partition))
                         for user in users)
    else:
        if not facts.secret_arns:
            raise IamFetchError(f"database '{database.name}': proxy '{database.identifier}' names no secret in its "
                                "auth settings, but the policy says it logs in with secrets", service="rds")
        requests = tuple((GET_SECRET_ACTION, arn) for arn in facts.secret_arns)
        kms = {"Sid": "ProxyDecryptUserSecrets", "Effect": "Allow", "Action": "kms:Decrypt",
               "Resource": f"arn:{partition}:kms:{database.region}:{account}:key/*",
               "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{database.region}.amazonaws.com"}}}
    return ProxyLeg(database=database.name, proxy=database.identifier, role_arn=facts.role_arn,
                    target_kind=target.kind, target=target.identifier, target_resource_id=target_resource_id,
                    mode=target.auth, requests=requests, kms_statement=kms)
